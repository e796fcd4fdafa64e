-- queue_fetch.lua -- a drainer's lease of the jobs it may run now.
--
-- ARGV[11] consumer, ARGV[12] jobs wanted, ARGV[13] the visibility
-- timeout in ms (the drainer's setting).  Promotes due delayed jobs,
-- reclaims messages idle past the visibility timeout (a stalled lease
-- counts as an attempt and takes the backoff), then leases what the
-- in-flight bound and the rate limit allow.  Returns
-- { wake_ms, limited, last_id, stalled, dead, pending,
--   {id, key, kind, payload, attempt, request id, origin}... }: wake_ms
-- is when something may become ready (-1: only a new job), limited 1
-- when capacity, not work, is missing; origin is the job's outbox row
-- ('' none, queue_enqueue.lua), by which the drainer marks that row.

-- keel: include queue_prelude.lua
ensure_group()
local me, want = ARGV[11], tonumber(ARGV[12])
local VIS = tonumber(ARGV[13])
local out = {}
local stalled, ndead = 0, 0
local due = redis.call('ZRANGEBYSCORE', D, '-inf', T, 'LIMIT', 0, 1000)
for _, k in ipairs(due) do
  redis.call('HSET', JP .. k, 'state', 'waiting')
  redis.call('XADD', S, '*', 'job', k)
end
if #due > 0 then redis.call('ZREM', D, unpack(due)) end

-- Messages idle past VIS: a lease whose deadline passed is an attempt
-- that failed; a waiting job's message is ours to lease; any other
-- (finished, dead) message is dropped.
local mine = {}
local cl = redis.call('XAUTOCLAIM', S, 'workers', me, VIS, '0-0',
  'COUNT', 100)
for _, m in ipairs(cl[2]) do
  local id = m[1]
  local k = m[2] and m[2][2]
  local st, lease, dl
  if k then
    local h = redis.call('HMGET', JP .. k, 'state', 'lease', 'deadline')
    st, lease, dl = h[1], tonumber(h[2]), tonumber(h[3])
  end
  if st == 'active' and dl and dl <= T then
    redis.call('ZREM', A, k)
    redis.call('XACK', S, 'workers', id)
    redis.call('XDEL', S, id)
    stalled = stalled + 1
    if retry_or_dead(k, lease,
        'stalled: lease expired (consumer died or hung)') == 3 then
      ndead = ndead + 1
    end
  elseif st == 'waiting' then
    mine[#mine + 1] = { id, k }
  elseif st ~= 'active' then
    redis.call('XACK', S, 'workers', id)
    redis.call('XDEL', S, id)
  end
end

-- Capacity: the in-flight bound, then the sliding-window rate limit;
-- wake is when the oldest lease in the window leaves it.
local cap = math.min(want, INFLIGHT - redis.call('ZCARD', A))
local limited, wake = 0, -1
if cap <= 0 then limited = 1 end
if RATE > 0 then
  redis.call('ZREMRANGEBYSCORE', R, '-inf', T - RATE_MS)
  local free = RATE - redis.call('ZCARD', R)
  if free < cap then
    cap = free
    local o = redis.call('ZRANGE', R, 0, 0, 'WITHSCORES')
    if o[2] then wake = math.max(1, tonumber(o[2]) + RATE_MS - T) end
    if cap <= 0 then limited = 1 end
  end
end

local function lease(id, k)
  local jk = JP .. k
  local h = redis.call('HMGET', jk, 'state', 'attempts', 'kind', 'payload',
    'rid', 'origin')
  if h[1] ~= 'waiting' then
    redis.call('XACK', S, 'workers', id)
    redis.call('XDEL', S, id)
    return
  end
  local att = tonumber(h[2]) + 1
  redis.call('HSET', jk, 'state', 'active', 'attempts', att, 'lease', att,
    'deadline', T + VIS, 'started', T, 'consumer', me)
  redis.call('ZADD', A, T + VIS, k)
  if RATE > 0 then redis.call('ZADD', R, T, id) end
  cap = cap - 1
  out[#out + 1] = { id, k, h[3], h[4], att, h[5] or '', h[6] or '' }
end
for _, m in ipairs(mine) do
  if cap <= 0 then break end
  lease(m[1], m[2])
end
if cap > 0 then
  local r = redis.call('XREADGROUP', 'GROUP', 'workers', me, 'COUNT', cap,
    'STREAMS', S, '>')
  if r then
    for _, m in ipairs(r[1][2]) do lease(m[1], m[2][2]) end
  end
end

-- When to look again: the next delayed job or lease deadline.
local function sooner(z)
  local o = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  if o[2] then
    local w = math.max(1, tonumber(o[2]) - T)
    if wake < 0 or w < wake then wake = w end
  end
end
sooner(D)
sooner(A)
local info = redis.call('XINFO', 'STREAM', S)
local last = '0-0'
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
local pending = redis.call('XLEN', S) + redis.call('ZCARD', D)
local res = { wake, limited, last, stalled, ndead, pending }
for _, j in ipairs(out) do res[#res + 1] = j end
return res
