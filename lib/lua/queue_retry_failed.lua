-- queue_retry_failed.lua -- dead letters back onto the queue.
--
-- Moves up to 1000 dead letters back with fresh attempts (the caller
-- calls again while the first element is 1000).  Returns { dead letters
-- read, key... }: the keys of the jobs moved, whose outbox rows the
-- caller makes unfinished again (lib/outbox.c).

-- keel: include queue_prelude.lua
ensure_group()
local ents = redis.call('XRANGE', X, '-', '+', 'COUNT', 1000)
local out = { #ents }
for _, e in ipairs(ents) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  if f.job and f.job ~= '' then
    add_job(f.job, f.kind or '', f.payload or '', 0, f.rid or '')
    out[#out + 1] = f.job
  end
  redis.call('XDEL', X, e[1])
end
return out
