-- A session's place in its user's index (auth.c, cluster mode; see
-- auth_session_put.lua).  KEYS[1]: the user's index.  ARGV: the
-- session's id, ttl (s).  Returns how many ids the index holds.
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SCARD', KEYS[1])
