-- queue_stats.lua -- the queue's counts for API.md's stats route.
--
-- Returns { waiting, active, delayed, completed, failed }.  A leased job
-- keeps its message on the stream, so waiting is the stream less them.

-- keel: include queue_prelude.lua
local a = redis.call('ZCARD', A)
return { math.max(0, redis.call('XLEN', S) - a), a, redis.call('ZCARD', D),
  redis.call('ZCARD', C), redis.call('XLEN', X) }
