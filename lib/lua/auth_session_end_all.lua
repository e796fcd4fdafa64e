-- Ends every session of a user but one (auth.c).  KEYS[1]: the user's
-- index.  ARGV[1]: the id to keep, or ''.  Returns how many ended.
local n = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if m ~= ARGV[1] then
    n = n + redis.call('DEL', 'keel:sess:' .. m)
    redis.call('SREM', KEYS[1], m)
  end
end
return n
