-- Ends one session (auth.c).  KEYS[1]: the session, KEYS[2]: the user's
-- index.  ARGV[1]: the session's id.
redis.call('SREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
