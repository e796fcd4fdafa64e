-- One member's score and competition rank on a board (board.c): O(log
-- N), 1 + the members at or above the next score's band.  KEYS[1]: the
-- board.  ARGV: the member.  Returns nil when the board is missing, {}
-- when the member isn't on it, else {score, rank}.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local v = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not v then return {} end
local band = 4294967296
local s = math.floor(tonumber(v) / band)
return {s, 1 + redis.call('ZCOUNT', KEYS[1],
  string.format('%.0f', (s + 1) * band), '+inf')}
