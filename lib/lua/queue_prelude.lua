-- queue_prelude.lua -- what every queue script shares (lib/queue.c).
--
-- KEYS: the queue's s d a c x r; ARGV[1] the job hash prefix,
-- ARGV[2..10] the queue's policy (keel_queue_args_init), the script's
-- own arguments after.  Times are milliseconds of this server's clock (T),
-- so all consumers on all hosts agree on one clock.
local S, D, A = KEYS[1], KEYS[2], KEYS[3]
local C, X, R = KEYS[4], KEYS[5], KEYS[6]
local JP = ARGV[1]
local ATTEMPTS, BACKOFF = tonumber(ARGV[2]), tonumber(ARGV[3])
local INFLIGHT = tonumber(ARGV[4])
local RATE, RATE_MS = tonumber(ARGV[5]), tonumber(ARGV[6])
local KEEP_C, AGE_C = tonumber(ARGV[7]), tonumber(ARGV[8])
local KEEP_F, AGE_F = tonumber(ARGV[9]), tonumber(ARGV[10])
local tm = redis.call('TIME')
local T = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)

local function ensure_group()
  if redis.call('EXISTS', S) == 0 then
    redis.call('XGROUP', 'CREATE', S, 'workers', '0', 'MKSTREAM')
  end
end

-- Drops completed jobs past the count or the age, dead letters past
-- theirs; bounded per call so no script runs long.
local function trim()
  local n = 0
  if AGE_C > 0 then
    local old = redis.call('ZRANGEBYSCORE', C, '-inf', T - AGE_C,
      'LIMIT', 0, 1000)
    for _, k in ipairs(old) do redis.call('DEL', JP .. k) end
    if #old > 0 then redis.call('ZREM', C, unpack(old)) end
    n = n + #old
  end
  local cnt = redis.call('ZCARD', C)
  if cnt > KEEP_C then
    local old = redis.call('ZRANGE', C, 0, math.min(cnt - KEEP_C, 1000) - 1)
    for _, k in ipairs(old) do redis.call('DEL', JP .. k) end
    if #old > 0 then redis.call('ZREM', C, unpack(old)) end
    n = n + #old
  end
  n = n + redis.call('XTRIM', X, 'MAXLEN', KEEP_F)
  if AGE_F > 0 then n = n + redis.call('XTRIM', X, 'MINID', T - AGE_F) end
  return n
end

-- How long a dead job's hash stays (ms), from its death.
local DEAD_TTL = 86400000

-- A finished job's hash says, by marks = 'origin', that the outbox row
-- of its job is marked by key and origin (lib/drain.c), never by key
-- alone: the code that finished it is this code, whose drainer does so.
-- queue_enqueue.lua hands the key of such a job to another row at once;
-- one finished by older code, whose drainer marked by key alone, only
-- after its grace.
local MARKS = 'origin'

-- Past the last attempt, or a job that can never succeed: a dead letter
-- with the reason; the hash stays a day as a tombstone so a re-push of
-- the same key is still recognised, and the dead letter keeps the job's
-- origin for its retry (queue_retry_failed.lua).  Every death comes
-- here (a finish, a stalled lease, the outage cap), and each records
-- when it happened (finished), as a completion does, and how its row is
-- marked (MARKS).
local function dead(k, why)
  local jk = JP .. k
  local h = redis.call('HMGET', jk, 'kind', 'payload', 'attempts',
    'created', 'rid', 'origin')
  redis.call('XADD', X, '*', 'job', k, 'kind', h[1] or '',
    'payload', h[2] or '', 'attempts', h[3] or '0', 'reason', why,
    'created', h[4] or '', 'failedAt', T, 'rid', h[5] or '',
    'origin', h[6] or '')
  redis.call('HDEL', jk, 'payload')
  redis.call('HSET', jk, 'state', 'failed', 'error', why, 'finished', T,
    'marks', MARKS)
  redis.call('PEXPIRE', jk, DEAD_TTL)
end

-- After attempt att failed: wait base * 2^(att-1), or dead letter.
-- Returns 2 (retrying) or 3 (dead letter), finish's codes.
local function retry_or_dead(k, att, why)
  if att < ATTEMPTS then
    redis.call('HSET', JP .. k, 'state', 'delayed', 'error', why)
    redis.call('ZADD', D, T + BACKOFF * 2 ^ (att - 1), k)
    return 2
  end
  dead(k, why)
  return 3
end

-- A fresh job under key k (any old hash replaced): on the stream now,
-- or in the delayed set for delay milliseconds.
-- rid: the id of the request that made the job ('' none), for its logs
-- and the mail it sends.
local function add_job(k, kind, payload, delay, rid)
  local jk = JP .. k
  redis.call('DEL', jk)
  redis.call('HSET', jk, 'kind', kind, 'payload', payload, 'attempts', 0,
    'lease', 0, 'created', T, 'rid', rid)
  if delay > 0 then
    redis.call('HSET', jk, 'state', 'delayed')
    redis.call('ZADD', D, T + delay, k)
  else
    redis.call('HSET', jk, 'state', 'waiting')
    redis.call('XADD', S, '*', 'job', k)
  end
end
