-- keel: include idem_index.lua
-- Keeps the answer of a claimed key (idem.c): only our own claim, which
-- may have expired meanwhile.  KEYS[1]: the key.  ARGV: fingerprint,
-- status, content type, body, how long it is kept (s).  On a single
-- Redis also KEYS[2], the client's index, and ARGV: the key's hash, the
-- most answers a client keeps, the prefix of the client's keys (KEYS[1]
-- is prefix .. hash): the oldest answers past that most are deleted here,
-- in the same call.  Cluster mode keeps the index first with
-- idem_keep.lua and passes KEYS[1] alone.  Last, after those, the
-- answer's Location, when it has one ('' or absent: none).
--
-- The hash's fields are shared with the binaries of a roll: an older
-- idem_begin.lua reads state, fp, status, ctype and body by name and
-- never sees 'location' (it replays without one), and a hash an older
-- idem_done.lua kept has none (replayed without one).  A claim lost and
-- taken again may hold the first run's: this answer's replaces it.
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2],
  'ctype', ARGV[3], 'body', ARGV[4])
local location = ARGV[KEYS[2] and 9 or 6]
if location and location ~= '' then
  redis.call('HSET', KEYS[1], 'location', location)
else
  redis.call('HDEL', KEYS[1], 'location')
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
if KEYS[2] then
  local prefix = ARGV[8]
  for _, h in ipairs(index_add(KEYS[2], ARGV[6], tonumber(ARGV[5]),
      tonumber(ARGV[7]))) do
    redis.call('DEL', prefix .. h)
  end
end
return 1
