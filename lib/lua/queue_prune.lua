-- queue_prune.lua -- the queue's retention now; returns how many went.

-- keel: include queue_prelude.lua
return trim()
