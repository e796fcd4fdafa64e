-- keel: include auth_session_gone.lua
-- Ends every session of a user but one (auth.c), each said on the
-- user's channel.  KEYS[1]: the user's index.  ARGV: the id to keep, or
-- ''; the user's channel; the user's id.  Returns how many ended.
local n = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if m ~= ARGV[1] then
    if redis.call('DEL', 'keel:sess:' .. m) == 1 then
      n = n + 1
      gone(ARGV[2], ARGV[3], m)
    end
    redis.call('SREM', KEYS[1], m)
  end
end
return n
