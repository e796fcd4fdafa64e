-- queue_enqueue.lua -- adds jobs unless their key is known.
--
-- ARGV[11] the grace in ms (below); ARGV[12..]: (key, kind, payload,
-- delay_ms, request id or '', origin or '') per job.  Returns per job
-- 1 added, 0 already known and still to run (waiting, delayed, leased),
-- 2 already known and completed, 3 already known and dead-lettered,
-- 4 the key is another origin's job that can't be replaced yet (not
-- added: ask again).  The outbox's relay tells by it a job Redis lost
-- (1) from one that finished (2, 3), and a job that ran (2) from one that
-- may be retried (3).
--
-- The origin names the outbox row a job came from (its id and creation
-- time, lib/outbox.c): the app's push after commit and the relay's push
-- of one row carry the same origin, and are one job.  A key known under
-- another origin is another row's job: a row that is gone, since the
-- outbox holds one row per key (PostgreSQL restored to an earlier point
-- reuses ids, and with them keys like email:attempt:<id>, while Redis
-- kept the old job).  That job says nothing about the new row's, so it
-- is replaced -- dropped, its dead letter too: its cause is gone with its
-- row -- and the new one added:
--
--   waiting, delayed        replaced now;
--   leased                  4: a consumer runs it; asked again later;
--   completed, dead         replaced now when its hash says marks =
--                           'origin' (queue_prelude.lua): its drainer
--                           marks the outbox row of its own origin, so
--                           that mark, however late, can't land on the
--                           new row;
--   the same, finished by   replaced once it finished ARGV[11] ms ago,
--   older code (no marks)   4 before: that code's drainer marks outbox
--                           rows by key alone right after the finish or
--                           the death, and a new row pushed before that
--                           mark would be marked as run, or as dead
--                           while its job waits -- and the relay watches
--                           no finished row, so a Redis loss then loses
--                           that job.  A 4 leaves the row unpushed,
--                           which that mark never touches.
--
-- The grace is for a rolling upgrade, and for a day after it (a
-- finished hash lives a day at most).  Such a job finished at its
-- hash's finished.  A dead job's hash from code that didn't time deaths
-- has no finished, but its TTL tells the time all the same: dead() has
-- always set DEAD_TTL at the death, and nothing else sets a TTL on a
-- job's hash.  A hash that tells neither (its TTL removed by hand) is
-- taken as past the grace, as before deaths were timed: waiting on it
-- would hold the new row unpushed for good, since such a hash never
-- ages.
--
-- A job with no origin on either side (keel_queue_enqueue, hashes of
-- code older than origins, a dead letter retried) is known by its key
-- alone, as before.

-- keel: include queue_prelude.lua
ensure_group()
local GRACE = tonumber(ARGV[11])

-- The dead letters of key k out of the dead-letter stream, so a retry
-- can't bring back the job of a row that is gone.  X is trimmed to the
-- retention (KEEP_F and its batch), so this walk is bounded; it runs
-- only when a dead job is replaced.
local function drop_dead_letters(k)
  local from = '-'
  for _ = 1, 1000 do
    local ents = redis.call('XRANGE', X, from, '+', 'COUNT', 1000)
    for _, e in ipairs(ents) do
      for i = 1, #e[2], 2 do
        if e[2][i] == 'job' and e[2][i + 1] == k then
          redis.call('XDEL', X, e[1])
        end
      end
    end
    if #ents < 1000 then return end
    from = '(' .. ents[#ents][1]
  end
end

-- Replaces the job of key k (in state) with a fresh one of origin.  The
-- old job's stream message, if any, stays: a lease finds the new job's
-- state and takes it or drops the message (queue_fetch.lua).
local function replace(k, kind, payload, delay, rid, origin, state)
  redis.call('ZREM', C, k)
  redis.call('ZREM', D, k)
  if state == 'failed' then drop_dead_letters(k) end
  add_job(k, kind, payload, delay, rid)
  redis.call('HSET', JP .. k, 'origin', origin)
end

-- When the job of key k, in state, with its hash's finished, finished
-- (ms); nil when that can't be told (above).
local function finished_at(k, state, finished)
  if finished then return tonumber(finished) end
  if state ~= 'failed' then return nil end
  local ttl = redis.call('PTTL', JP .. k)
  if ttl > 0 and ttl <= DEAD_TTL then return T - (DEAD_TTL - ttl) end
  return nil
end

-- Whether the job of key k, of another origin, in state, its hash's
-- finished and marks, may be replaced now; leased (active) never.
local function replaceable(k, state, finished, marks)
  if state == 'completed' or state == 'failed' then
    if marks == 'origin' then return true end
    local at = finished_at(k, state, finished)
    return at == nil or T - at >= GRACE
  end
  return state == 'waiting' or state == 'delayed'
end

local res = {}
for i = 12, #ARGV, 6 do
  local k, origin = ARGV[i], ARGV[i + 5]
  local h = redis.call('HMGET', JP .. k, 'state', 'origin', 'finished',
    'marks')
  local state, was = h[1], h[2] or ''
  local other = origin ~= '' and was ~= '' and was ~= origin
  if not state then
    add_job(k, ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]),
      ARGV[i + 4])
    if origin ~= '' then redis.call('HSET', JP .. k, 'origin', origin) end
    res[#res + 1] = 1
  elseif other and replaceable(k, state, h[3], h[4]) then
    replace(k, ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]),
      ARGV[i + 4], origin, state)
    res[#res + 1] = 1
  elseif other then
    res[#res + 1] = 4
  elseif state == 'completed' then
    res[#res + 1] = 2
  elseif state == 'failed' then
    res[#res + 1] = 3
  else
    res[#res + 1] = 0
  end
end
return res
