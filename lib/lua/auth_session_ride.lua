-- The session a bearer token names (auth.h: keel:sess:<sha256 hex>, a
-- hash of uid, role and exp), read in passing by another script: the
-- limiter's check runs with this in front of it, and so does
-- auth_session_get.lua.  ride(key) returns the uid, the role, the expiry
-- (unix s) and the user's read-your-writes window left (ms), all as
-- text, or false when key holds no session.  The key's TTL ends a
-- session; auth.c checks the expiry too (a TTL lost in a restore), so
-- this costs no TIME call: it runs on every request.
local function ride(key)
  local s = redis.call('HMGET', key, 'uid', 'role', 'exp')
  if not s[1] then return false end
  local ryw = redis.call('PTTL', 'keel:ryw:' .. s[1])
  if ryw < 0 then ryw = 0 end
  return s[1], s[2] or '', s[3] or '', tostring(ryw)
end
