-- One account's password-reset emails in a sliding window (auth.c).
-- KEYS[1]: the account's log, a sorted set of the jobs that sent one,
-- each scored by when (ms, the server's clock).  ARGV: the most in a
-- window, the window (ms), the job's key.  Returns 1: send (counted
-- once, so a retried job doesn't spend the cap again), 0: the cap is
-- reached, send nothing.
local max, win = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= max then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], win)
return 1
