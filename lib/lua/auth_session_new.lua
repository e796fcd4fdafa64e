-- A new session and its place in the user's index, at once (auth.c).
-- KEYS[1]: the session, KEYS[2]: the user's index.  ARGV: uid, role,
-- exp (unix s), ttl (s), the session's id.
redis.call('HSET', KEYS[1], 'uid', ARGV[1], 'role', ARGV[2], 'exp', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
-- Drop ids whose session expired, so the index can't grow forever.
for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', 'keel:sess:' .. m) == 0 then
    redis.call('SREM', KEYS[2], m)
  end
end
redis.call('SADD', KEYS[2], ARGV[5])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[4]) then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 1
