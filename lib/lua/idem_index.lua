-- A client's index of kept answers (idem.c), included by the scripts that
-- keep one: a sorted set of the keys' hashes scored by when each answer
-- was kept (Redis's clock, ms).  index_add(index, hash, ttl, max) puts
-- hash in at now; drops the entries older than ttl (s), whose answers
-- have expired with them; and takes out the oldest past max - 1 to make
-- room, so the index never holds more than max.  Returns the hashes taken
-- out: their answers are the caller's to delete.  The index lives as long
-- as its newest answer.
local function index_add(index, hash, ttl, max)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local gone = {}
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now - ttl * 1000)
  -- A key kept again (a lost claim, or after its answer expired) takes
  -- one place, not two.
  redis.call('ZREM', index, hash)
  local over = redis.call('ZCARD', index) - (max - 1)
  if over > 0 then
    gone = redis.call('ZRANGE', index, 0, over - 1)
    redis.call('ZREMRANGEBYRANK', index, 0, over - 1)
  end
  redis.call('ZADD', index, now, hash)
  redis.call('EXPIRE', index, ttl)
  return gone
end
