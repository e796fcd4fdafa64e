-- Starts a rebuild's fresh key (board.c): a sorted set holding only the
-- run's sentinel (scored -1, below every entry), expiring if the run
-- dies.  From now on board_add.lua writes into it too.  A fresh key
-- with no TTL or no sentinel is no run's (left by a writer that
-- recreated it after Redis lost it): taken over, or it would stop every
-- later rebuild.  KEYS[1]: the fresh key.  ARGV: the run's sentinel,
-- seconds it may live.  Returns 0 when another run is filling it, 1
-- when begun, 2 when begun over an abandoned one.
local r = 1
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('PTTL', KEYS[1]) > 0 and
      redis.call('ZCOUNT', KEYS[1], -1, -1) > 0 then
    return 0
  end
  redis.call('DEL', KEYS[1])
  r = 2
end
redis.call('ZADD', KEYS[1], -1, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return r
