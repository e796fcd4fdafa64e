-- SPDX-License-Identifier: ISC
-- submit.lua -- wrk script of tests/bench/submit.py: each request submits
-- the next attempt of the list, with its owner's bearer token.
--   wrk -tN ... -s submit.lua URL -- PAIRS BODY N
-- PAIRS: lines "<attempt id> <token>", each used once; BODY: the JSON.
-- wrk's threads each run this file in their own Lua state: thread k of N
-- takes lines k, k + N, k + 2N, ...

local count = 0

function setup(thread)
  count = count + 1
  thread:set("k", count)
end

function init(args)
  local list = {}
  for line in io.lines(args[1]) do
    local id, tok = line:match("^(%d+) (%S+)$")
    list[#list + 1] = { id = id, tok = tok }
  end
  local f = io.open(args[2])
  body = f:read("*a")
  f:close()
  mine, i, step = list, k, tonumber(args[3])
end

function request()
  local p = mine[i]
  i = i + step
  return wrk.format("POST", "/api/attempts/" .. p.id .. "/submit", {
    ["Authorization"] = "Bearer " .. p.tok,
    ["Content-Type"] = "application/json",
  }, body)
end

-- The first non-2xx answers, printed: a benchmark that counts them fails.
local shown = 0
function response(status, headers, body)
  if status >= 300 and shown < 3 then
    shown = shown + 1
    io.stderr:write(status .. " " .. body .. "\n")
  end
end
