-- A session's hash alone (auth.c, cluster mode: the user's index lives
-- in the user's slot, so auth_session_new.lua's one script is two
-- there; the index is written first).  KEYS[1]: the session.  ARGV:
-- uid, role, exp (unix s), ttl (s).
local t = redis.call('TIME')
local born = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('HSET', KEYS[1], 'uid', ARGV[1], 'role', ARGV[2], 'exp', ARGV[3],
  'born', born)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
