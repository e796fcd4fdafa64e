-- Records one attempt against an auth limiter (limit.c, after the
-- handler answered).  KEYS[1]: the limiter's key.  ARGV[1]: the
-- request's member; ARGV[2]: the window (ms).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
