-- queue_retry_failed.lua -- dead letters back onto the queue.
--
-- Moves up to 1000 dead letters back with fresh attempts (the caller
-- calls again while the first element is 1000).  Returns { dead letters
-- read, key, origin, key, origin... }: the jobs moved, whose outbox rows
-- (of that origin; '' none: by key) the caller makes unfinished again
-- (lib/outbox.c).
--
-- A job moved back keeps its origin (queue_enqueue.lua): else the next
-- push of its row would take it for another row's job and replace it,
-- and a push of a row that reused its key would take it for its own.
-- A dead letter of older code has none; the job's tombstone, while it
-- lasts (a day), still has it.  A dead letter always belongs to that
-- tombstone: a job replaced under its key takes its dead letters along.

-- keel: include queue_prelude.lua
ensure_group()
local ents = redis.call('XRANGE', X, '-', '+', 'COUNT', 1000)
local out = { #ents }
for _, e in ipairs(ents) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  if f.job and f.job ~= '' then
    local origin = f.origin
    if not origin then
      local h = redis.call('HMGET', JP .. f.job, 'state', 'origin')
      origin = h[1] == 'failed' and h[2] or ''
    end
    add_job(f.job, f.kind or '', f.payload or '', 0, f.rid or '')
    if origin ~= '' then
      redis.call('HSET', JP .. f.job, 'origin', origin)
    end
    out[#out + 1] = f.job
    out[#out + 1] = origin
  end
  redis.call('XDEL', X, e[1])
end
return out
