-- Gives back the places an attempt held (limit.c, after the handler
-- answered with a success): one entry per key, the one limit_check.lua
-- pushed as "<ms>:<member>".  Only the auth limiter's places are held,
-- and its lists are as short as its limit, so finding the entry by a
-- scan is cheap.  KEYS: the lists; ARGV[1]: the request's member.
local tail = ':' .. ARGV[1]
local given = 0
for _, k in ipairs(KEYS) do
  for _, v in ipairs(redis.call('LRANGE', k, 0, -1)) do
    if string.sub(v, -#tail) == tail then
      given = given + redis.call('LREM', k, 1, v)
      break
    end
  end
end
return given
