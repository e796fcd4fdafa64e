-- keel: after auth_session_ride.lua
-- The rate limiter's check (limit.c): every limiter of one request, on
-- Redis's clock, admitting it only when all agree.  Runs after the
-- fragment its caller hands over, which defines ride(key): a read that
-- rides on this round trip (auth's session), whose first value, when it
-- finds one, is the id the limits key on.
--
-- KEYS[1]: what ride() reads, or ''; KEYS[1 + i]: limiter i's key for an
-- anonymous caller.  ARGV[1]: this request's member (its id); ARGV[2]:
-- the number of limiters; ARGV[3]: the key prefix; then per limiter its
-- name, limit, window (ms) and flags (1: admitting consumes; 2: key on
-- ride's id when it found one).  Returns {admitted, n, ride's n values
-- as text, then remaining and ms-to-reset per limiter}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seen = {}
if KEYS[1] ~= '' then
  local r = { ride(KEYS[1]) }
  if r[1] then
    for i = 1, #r do seen[i] = tostring(r[i]) end
  end
end
local id = seen[1]
local n = tonumber(ARGV[2])
local keys, cnt, ok = {}, {}, 1
for i = 1, n do
  local b = 4 + (i - 1) * 4
  local k = KEYS[i + 1]
  if id and tonumber(ARGV[b + 3]) >= 2 then
    k = ARGV[3] .. ARGV[b] .. ':u:' .. id
  end
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now - tonumber(ARGV[b + 2]))
  keys[i] = k
  cnt[i] = redis.call('ZCARD', k)
  if cnt[i] >= tonumber(ARGV[b + 1]) then ok = 0 end
end
local out = {ok, #seen}
for i = 1, #seen do out[#out + 1] = seen[i] end
for i = 1, n do
  local b = 4 + (i - 1) * 4
  local lim, win = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local k, c, rem, reset = keys[i], cnt[i], 0, win
  if c >= lim then
    -- Full: the window frees a place when its oldest counted one ages.
    local o = redis.call('ZRANGE', k, c - lim, c - lim, 'WITHSCORES')
    reset = tonumber(o[2]) + win - now
  else
    if ok == 1 and tonumber(ARGV[b + 3]) % 2 == 1 then
      redis.call('ZADD', k, now, ARGV[1])
      redis.call('PEXPIRE', k, win)
      c = c + 1
    end
    rem = lim - c
    if c > 0 then
      local o = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
      reset = tonumber(o[2]) + win - now
    end
  end
  out[#out + 1] = rem
  out[#out + 1] = reset
end
return out
