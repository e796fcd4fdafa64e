-- keel: include idem_index.lua
-- A kept answer's place in its client's index (idem.c, cluster mode: the
-- answers stand alone in other slots, so idem.c deletes the ones this
-- hands back a command at a time).  KEYS[1]: the client's index.  ARGV:
-- the key's hash, how long an answer is kept (s), the most answers a
-- client keeps.  Returns the hashes taken out (idem_index.lua).
return index_add(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
