-- Adds a batch of a rebuild's entries to its fresh key (board.c), only
-- while the key holds the run's sentinel: a plain ZADD would recreate a
-- key Redis lost (emptied, restarted without data) as a board with no
-- sentinel and no TTL, which the swap refuses and which would stay
-- forever.  GT, as everywhere.  KEYS[1]: the fresh key.  ARGV: the
-- run's sentinel, then value, member pairs.  Returns 1 when added, 0
-- when the key is gone or another run's (the swap then says so).
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'GT', unpack(ARGV, 2))
return 1
