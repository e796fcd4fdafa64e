-- A place among a user's open notification streams (stream/stream.c),
-- held by a lease the stream renews at each heartbeat
-- (stream_renew.lua), so the places of a process that died free
-- themselves.  KEYS[1]: the user's streams, a sorted set of members
-- scored by when their lease ends (ms, Redis's clock).  ARGV: the
-- stream's member, the most streams a user may have, the lease (ms).
-- Returns 1 with the place taken, 0 when the user has the most already.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
