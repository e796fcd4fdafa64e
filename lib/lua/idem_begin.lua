-- Claims an Idempotency-Key, or reads what it holds (idem.c).
-- KEYS[1]: the key.  ARGV[1]: the request's fingerprint; ARGV[2]: how
-- long a claim outlives a crash (ms).  Returns {'new'}, {'mismatch'},
-- {'running'} or {'done', status, content type, body}.
local v = redis.call('HMGET', KEYS[1], 'state', 'fp', 'status', 'ctype',
  'body')
if not v[1] then
  redis.call('HSET', KEYS[1], 'state', 'running', 'fp', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'new'}
end
if v[2] ~= ARGV[1] then return {'mismatch'} end
if v[1] ~= 'done' then return {'running'} end
return {'done', v[3], v[4] or '', v[5] or ''}
