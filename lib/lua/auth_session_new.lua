-- keel: include auth_session_gone.lua
-- A new session and its place in the user's index, at once (auth.c).
-- KEYS[1]: the session, KEYS[2]: the user's index.  ARGV: uid, role,
-- exp (unix s), ttl (s), the session's id, the most sessions a user may
-- hold, the user's channel.  Past that, the oldest end (said on the
-- channel, as a logout is): the index never grows past it and a login
-- never walks more than it.
local max = tonumber(ARGV[6])
-- born: the server's clock in microseconds, which orders logins made in
-- the same second.
local t = redis.call('TIME')
local born = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('HSET', KEYS[1], 'uid', ARGV[1], 'role', ARGV[2], 'exp', ARGV[3],
  'born', born)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
if redis.call('SCARD', KEYS[2]) > max then
  local live = {}
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    local k = 'keel:sess:' .. m
    if redis.call('EXISTS', k) == 1 then
      live[#live + 1] = { m, tonumber(redis.call('HGET', k, 'born')) or 0 }
    else
      redis.call('SREM', KEYS[2], m)
    end
  end
  -- A session from before 'born' existed sorts first: it is older.
  table.sort(live, function(a, b) return a[2] < b[2] end)
  for i = 1, #live - max do
    redis.call('DEL', 'keel:sess:' .. live[i][1])
    redis.call('SREM', KEYS[2], live[i][1])
    gone(ARGV[7], ARGV[1], live[i][1])
  end
end
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[4]) then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 1
