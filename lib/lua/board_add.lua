-- Adds one member to a board (board.c): to the board when it exists,
-- and to its fresh key when a rebuild is filling one, so the swap can't
-- drop it.  A fresh key with no TTL or no sentinel is no run's
-- (board_begin.lua takes it over): left alone, so an add never counts
-- as stored in a key no swap will ever make the board.  GT: a value is
-- only ever raised.  KEYS[1]: the board, KEYS[2]: its fresh key.  ARGV:
-- value, member.  Returns how many of the two took it (0: the board is
-- lost or not built yet).
local n = 0
for i = 1, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 and (i == 1 or
      (redis.call('PTTL', KEYS[i]) > 0 and
       redis.call('ZCOUNT', KEYS[i], -1, -1) > 0)) then
    redis.call('ZADD', KEYS[i], 'GT', ARGV[1], ARGV[2])
    n = n + 1
  end
end
return n
