-- One page of a board with competition ranks (board.c): O(log N +
-- limit).  Values are score * 2^32 + a time part, so the members with a
-- higher score are those at or above the next score's band: the first
-- entry's rank is 1 + their count (ZCOUNT), each later one's its
-- position unless it ties the one before.  The sentinel (scored -1)
-- ends the board.  KEYS[1]: the board.  ARGV: offset, limit.  Returns
-- nil when the board is missing, else {size, user, score, rank, ...}.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local band = 4294967296
local off = tonumber(ARGV[1])
local r = redis.call('ZREVRANGE', KEYS[1], off, off + tonumber(ARGV[2]) - 1,
  'WITHSCORES')
local out = {redis.call('ZCARD', KEYS[1]) - 1}
local rank, prev = 0, nil
for i = 1, #r, 2 do
  local v = tonumber(r[i + 1])
  if v < 0 then break end
  local s = math.floor(v / band)
  if s ~= prev then
    if prev == nil and off > 0 then
      rank = 1 + redis.call('ZCOUNT', KEYS[1],
        string.format('%.0f', (s + 1) * band), '+inf')
    else
      rank = off + (i + 1) / 2
    end
    prev = s
  end
  out[#out + 1] = r[i]
  out[#out + 1] = s
  out[#out + 1] = rank
end
return out
