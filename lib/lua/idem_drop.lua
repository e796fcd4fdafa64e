-- Forgets a claim whose request failed, so a retry runs (idem.c): only
-- our own, and only while it runs.  KEYS[1]: the key.  ARGV[1]: the
-- fingerprint.
if redis.call('HGET', KEYS[1], 'fp') == ARGV[1] and
    redis.call('HGET', KEYS[1], 'state') == 'running' then
  return redis.call('DEL', KEYS[1])
end
return 0
