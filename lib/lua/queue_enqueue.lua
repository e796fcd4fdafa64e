-- queue_enqueue.lua -- adds jobs unless their key is known.
--
-- ARGV[11..]: (key, kind, payload, delay_ms) per job.  Returns one 0/1
-- per job: 1 added, 0 already known.

-- keel: include queue_prelude.lua
ensure_group()
local res = {}
for i = 11, #ARGV, 4 do
  if redis.call('EXISTS', JP .. ARGV[i]) == 1 then
    res[#res + 1] = 0
  else
    add_job(ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]))
    res[#res + 1] = 1
  end
end
return res
