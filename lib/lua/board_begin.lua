-- Starts a rebuild's fresh key (board.c): a sorted set holding only the
-- run's sentinel (scored -1, below every entry), expiring if the run
-- dies.  From now on board_add.lua writes into it too.  KEYS[1]: the
-- fresh key.  ARGV: the run's sentinel, seconds it may live.  Returns 0
-- when another run is filling it.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('ZADD', KEYS[1], -1, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
