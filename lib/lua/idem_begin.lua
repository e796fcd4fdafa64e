-- Claims an Idempotency-Key, or reads what it holds (idem.c).
-- KEYS[1]: the key.  ARGV[1]: the request's fingerprint; ARGV[2]: how
-- long a claim outlives a crash (ms); ARGV[3], while KEEL_SECRET rotates:
-- its fingerprint under KEEL_SECRET_FALLBACK, which a claim made before
-- the change (or by a host not yet rolled) holds -- the same request's,
-- never stored.  Each binary runs its own copy of this script, so an
-- older one, passing two, is unaffected.  Returns {'new'}, {'mismatch'},
-- {'running'} or {'done', status, content type, body, location}; the
-- location is '' for an answer kept without one (a 201's Location: an
-- answer kept before it was, or by an older binary during a roll).
local v = redis.call('HMGET', KEYS[1], 'state', 'fp', 'status', 'ctype',
  'body', 'location')
if not v[1] then
  redis.call('HSET', KEYS[1], 'state', 'running', 'fp', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'new'}
end
if v[2] ~= ARGV[1] and (not ARGV[3] or v[2] ~= ARGV[3]) then
  return {'mismatch'}
end
if v[1] ~= 'done' then return {'running'} end
return {'done', v[3], v[4] or '', v[5] or '', v[6] or ''}
