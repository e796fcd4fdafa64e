-- Gives back the places an attempt held (limit.c, after the handler
-- answered with a success): one member per key.  KEYS: the sorted sets;
-- ARGV[1]: the request's member.
for _, k in ipairs(KEYS) do
  redis.call('ZREM', k, ARGV[1])
end
return #KEYS
