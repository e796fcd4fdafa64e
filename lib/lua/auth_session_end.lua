-- keel: include auth_session_gone.lua
-- Ends one session (auth.c) and says so on its user's channel.  KEYS[1]:
-- the session, KEYS[2]: the user's index.  ARGV: the session's id, the
-- user's channel, the user's id.
redis.call('SREM', KEYS[2], ARGV[1])
local n = redis.call('DEL', KEYS[1])
if n == 1 then gone(ARGV[2], ARGV[3], ARGV[1]) end
return n
