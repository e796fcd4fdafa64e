-- queue_finish.lua -- records what became of leased jobs.
--
-- ARGV[11] how many times a job may fail with PostgreSQL down and be
-- handed back uncounted; ARGV[12..]: (msg id, key, attempt, outcome,
-- reason) per job.  outcome is done, retry, fail, release (handed back
-- unstarted: the attempt is not counted) or outage (failed while
-- PostgreSQL didn't answer: handed back uncounted too, but only ARGV[11]
-- times in the job's life -- its hash counts them -- and after that
-- counted as a retry, so a job that takes PostgreSQL down itself still
-- reaches the dead letters).  Returns per job 0 (the lease is no longer
-- current: refused), 1 done, 2 retrying, 3 dead letter, 4 released.
-- Retention runs here, not in a separate sweep that may never come.

-- keel: include queue_prelude.lua
local OUTAGES_MAX = tonumber(ARGV[11])
local res = {}

local function release(jk, k, att)
  redis.call('HSET', jk, 'state', 'waiting', 'attempts', att - 1, 'lease', 0)
  redis.call('XADD', S, '*', 'job', k)
  return 4
end

for i = 12, #ARGV, 5 do
  local id, k, att = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local oc, why = ARGV[i + 3], ARGV[i + 4]
  local jk = JP .. k
  local h = redis.call('HMGET', jk, 'state', 'lease')
  if h[1] ~= 'active' or tonumber(h[2]) ~= att then
    res[#res + 1] = 0
  else
    redis.call('ZREM', A, k)
    redis.call('XACK', S, 'workers', id)
    redis.call('XDEL', S, id)
    if oc == 'done' then
      if KEEP_C > 0 then
        redis.call('HSET', jk, 'state', 'completed', 'finished', T,
          'marks', MARKS)
        redis.call('ZADD', C, T, k)
      else
        redis.call('DEL', jk)
      end
      res[#res + 1] = 1
    elseif oc == 'release' then
      res[#res + 1] = release(jk, k, att)
    elseif oc == 'outage' then
      local n = redis.call('HINCRBY', jk, 'outages', 1)
      if n <= OUTAGES_MAX then
        res[#res + 1] = release(jk, k, att)
      else
        res[#res + 1] = retry_or_dead(k, att, string.format(
          '%s (failed with PostgreSQL down %d times: counted)', why, n))
      end
    elseif oc == 'retry' then
      res[#res + 1] = retry_or_dead(k, att, why)
    else
      dead(k, why)
      res[#res + 1] = 3
    end
  end
end
trim()
return res
