-- queue_enqueue.lua -- adds jobs unless their key is known.
--
-- ARGV[11..]: (key, kind, payload, delay_ms, request id or '') per job.
-- Returns per job
-- 1 added, 0 already known and still to run (waiting, delayed, leased),
-- 2 already known and completed, 3 already known and dead-lettered.  The
-- outbox's relay tells by it a job Redis lost (1) from one that finished
-- (2, 3), and a job that ran (2) from one that may be retried (3).

-- keel: include queue_prelude.lua
ensure_group()
local res = {}
for i = 11, #ARGV, 5 do
  local state = redis.call('HGET', JP .. ARGV[i], 'state')
  if not state then
    add_job(ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]),
      ARGV[i + 4])
    res[#res + 1] = 1
  elseif state == 'completed' then
    res[#res + 1] = 2
  elseif state == 'failed' then
    res[#res + 1] = 3
  else
    res[#res + 1] = 0
  end
end
return res
