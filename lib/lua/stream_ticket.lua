-- Takes a stream ticket (stream/stream.c; notify.h) and reads the
-- session that asked for it, in one round trip: a ticket outlives
-- neither its session nor its first use.  KEYS[1]: the ticket, whose
-- value is "<uid>:<the session's 64-hex id>".  Returns the session's
-- uid, role, exp (unix s) and id, as text, or false when the ticket is
-- unknown, used or expired, or its session ended (or is not the
-- ticket's user's).  A single Redis only: in cluster mode the session
-- is in another slot, and stream.c takes the ticket (GETDEL) and reads
-- the session a command at a time.
local v = redis.call('GETDEL', KEYS[1])
if not v then return false end
local uid, id = string.match(v, '^(%d+):(%x+)$')
if not uid then return false end
local s = redis.call('HMGET', 'keel:sess:' .. id, 'uid', 'role', 'exp')
if s[1] ~= uid then return false end
return { s[1], s[2] or '', s[3] or '', id }
