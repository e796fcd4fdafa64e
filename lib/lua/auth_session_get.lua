-- keel: include auth_session_ride.lua
-- A session on its own, when no other script read it in passing.
-- KEYS[1]: the session.  Returns ride()'s values, or nil.
local r = { ride(KEYS[1]) }
if not r[1] then return false end
return r
