-- Renews an open stream's lease (stream_lease.lua), only if it still
-- holds one.  KEYS[1]: the user's streams.  ARGV: the stream's member,
-- the lease (ms).  Returns 1 when renewed, 0 when the place was lost.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
