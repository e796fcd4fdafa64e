-- Swaps a rebuilt board in (board.c): renames the fresh key over the
-- board in one step, then sets when it expires (a day past its period)
-- or makes it permanent.  KEYS[1]: the fresh key, KEYS[2]: the board.
-- ARGV: the run's sentinel, Unix second to expire at (0: never), the
-- fewest members the fresh key must hold (its entries sent and the
-- sentinel; the drainer may have added more).  Returns 0 when the fresh
-- key isn't this run's (it expired, or Redis lost it), 2 when it holds
-- fewer (an add failed: the caller drops it), 1 when swapped.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then return 2 end
redis.call('RENAME', KEYS[1], KEYS[2])
if tonumber(ARGV[2]) > 0 then
  redis.call('EXPIREAT', KEYS[2], ARGV[2])
else
  redis.call('PERSIST', KEYS[2])
end
return 1
