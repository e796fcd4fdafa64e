-- keel: after auth_session_ride.lua
-- The rate limiter's check (limit.c): every limiter of one request, on
-- Redis's clock, admitting it only when all agree.  Runs after the
-- fragment its caller hands over, which defines ride(key): a read that
-- rides on this round trip (auth's session), whose first value, when it
-- finds one, is the id the limits key on.
--
-- Each limiter is a list of the requests it admitted inside its window,
-- newest at the head, each entry "<ms>:<member>".  A denied request is
-- never pushed, so a list holds at most its limit, and the aged are cut
-- from the tail (trim below): a check costs a fixed handful of calls,
-- O(log n) when a run of entries aged, where a sorted set paid O(log n)
-- on every step.  Exact like the sorted set, as long as Redis's clock
-- doesn't step back (then entries are out of order for one window, and
-- some leave early or late).
--
-- KEYS[1]: what ride() reads, or ''; KEYS[1 + i]: limiter i's key for an
-- anonymous caller.  ARGV[1]: this request's member (its id); ARGV[2]:
-- the number of limiters; ARGV[3]: the key prefix; then per limiter its
-- name, limit, window (ms) and flags (1: admitting consumes; 2: key on
-- ride's id when it found one; 4: keep, see below).  Returns {admitted,
-- n, ride's n values as text, then remaining and ms-to-reset per
-- limiter}.
--
-- What a check writes is not worth its disk: a window is a minute of
-- other requests, and writing it to the AOF cost Redis a fifth of its
-- time on every request (and grew the file with every request).  So
-- unless a limiter asks to be kept (4: the auth limiter's, whose
-- failed logins a restart should not forgive), this call's writes go
-- neither to the AOF nor to replicas: a Redis restart or failover
-- starts those windows afresh.
local n, flags, keep = tonumber(ARGV[2]), {}, false
for i = 1, n do
  flags[i] = tonumber(ARGV[4 + (i - 1) * 4 + 3])
  if flags[i] >= 4 then keep = true end
end
if not keep then redis.set_repl(redis.REPL_NONE) end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function stamp(o) return tonumber(string.match(o, '^%d+')) end

-- Drops k's entries stamped at or before cut; returns the oldest kept
-- one's ms (nil: none left) and how many are left.  Usually the tail is
-- in the window: two calls.  Else the aged run at the tail is measured
-- by doubling and then halving (the list is in time order) and cut off
-- with one LTRIM, so a window that aged whole while its client was away
-- costs O(log n) calls, not one per entry.
local function trim(k, cut)
  local o = redis.call('LINDEX', k, -1)
  if not o then return nil, 0 end
  local n = redis.call('LLEN', k)
  local s = stamp(o)
  if s > cut then return s, n end
  local lo, hi = 1, 2     -- the last lo are aged; the last hi are not all
  while hi <= n and stamp(redis.call('LINDEX', k, -hi)) <= cut do
    lo, hi = hi, hi * 2
  end
  if hi > n then hi = n + 1 end
  while hi - lo > 1 do
    local mid = math.floor((lo + hi) / 2)
    if stamp(redis.call('LINDEX', k, -mid)) > cut then hi = mid
    else lo = mid end
  end
  if lo == n then
    redis.call('DEL', k)
    return nil, 0
  end
  redis.call('LTRIM', k, 0, n - lo - 1)
  return stamp(redis.call('LINDEX', k, -1)), n - lo
end

local seen = {}
if KEYS[1] ~= '' then
  local r = { ride(KEYS[1]) }
  if r[1] then
    for i = 1, #r do seen[i] = tostring(r[i]) end
  end
end
local id = seen[1]
-- Each argument is read as a number once: in Lua 5.1 every conversion
-- is a strtod() or a "%.14g", and these run on every request.
local keys, cnt, oldest, lims, wins, ok = {}, {}, {}, {}, {}, 1
for i = 1, n do
  local b = 4 + (i - 1) * 4
  local k = KEYS[i + 1]
  lims[i], wins[i] = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  if id and flags[i] % 4 >= 2 then
    k = ARGV[3] .. ARGV[b] .. ':u:' .. id
  end
  keys[i] = k
  oldest[i], cnt[i] = trim(k, now - wins[i])
  if cnt[i] >= lims[i] then ok = 0 end
end
local out = {ok, #seen}
for i = 1, #seen do out[#out + 1] = seen[i] end
local entry = now .. ':' .. ARGV[1]
for i = 1, n do
  local lim, win = lims[i], wins[i]
  local k, c, first, rem, reset = keys[i], cnt[i], oldest[i], 0, win
  if c >= lim then
    -- Full: the window frees a place when its oldest counted one ages
    -- (the limit may have shrunk below the list: count from the tail).
    local o = redis.call('LINDEX', k, lim - c - 1)
    if o then reset = stamp(o) + win - now end
  else
    if ok == 1 and flags[i] % 2 == 1 then
      redis.call('LPUSH', k, entry)
      redis.call('PEXPIRE', k, win)
      c = c + 1
      first = first or now
    end
    rem = lim - c
    if first then reset = first + win - now end
  end
  out[#out + 1] = rem
  out[#out + 1] = reset
end
return out
