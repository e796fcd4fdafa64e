-- Keeps the answer of a claimed key (idem.c): only our own claim, which
-- may have expired meanwhile.  KEYS[1]: the key.  ARGV: fingerprint,
-- status, content type, body, how long it is kept (s).
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2],
  'ctype', ARGV[3], 'body', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
