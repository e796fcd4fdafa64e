-- The end of a session, announced on its user's live channel (auth.h):
-- included by the scripts that end sessions, so a session and the news
-- of its end go at once.  Every stream process hears it and closes the
-- streams the session opened (stream/stream.c).  gone(channel, uid, id):
-- the user's channel, the user's id and the session's 64-hex id, as
-- text; the message is auth.c's END_MSG, byte for byte.
local function gone(channel, uid, id)
  redis.call('PUBLISH', channel,
    string.format('{"userId":%s,"sessionEnded":"%s"}', uid, id))
end
