-- SPDX-License-Identifier: ISC
-- capacity.lua -- wrk script of tests/bench/capacity.py and submit.py:
-- requests read from a file, one a line,
-- "METHOD<TAB>PATH<TAB>TOKEN<TAB>BODY" (TOKEN "-": none; BODY may be
-- empty).
--   wrk -tN ... -s capacity.lua URL -- FILE N ONCE
-- wrk's threads each run this file in their own Lua state: thread k of N
-- takes lines k, k + N, k + 2N, ... and starts over at its first line
-- when it reaches the end, unless ONCE is "1" (each line used once: a
-- submit): then it says so on stderr and repeats its last line, whose
-- answer (409) the bench counts as a failure.

local count = 0

function setup(thread)
  count = count + 1
  thread:set("k", count)
end

function init(args)
  local all = {}
  for line in io.lines(args[1]) do
    local m, p, t, b = line:match("^(%u+)\t([^\t]+)\t([^\t]+)\t?(.*)$")
    local h = {}
    if t ~= "-" then h["Authorization"] = "Bearer " .. t end
    if b ~= "" then h["Content-Type"] = "application/json" end
    -- wrk.format sets Content-Length from the body: "" makes it 0,
    -- which a POST without a body needs.
    if b == "" and m ~= "POST" then b = nil end
    all[#all + 1] = wrk.format(m, p, h, b)
  end
  local step = tonumber(args[2])
  mine = {}
  for j = k, #all, step do mine[#mine + 1] = all[j] end
  once = args[3] == "1"
  i = 0
end

function request()
  i = i + 1
  if i > #mine then
    if once then
      if i == #mine + 1 then io.stderr:write("capacity.lua: ran out\n") end
      i = #mine
    else
      i = 1
    end
  end
  return mine[i]
end

-- The first non-2xx answers, printed: the bench counts them.
local shown = 0
function response(status, headers, body)
  if status >= 300 and shown < 3 then
    shown = shown + 1
    io.stderr:write(status .. " " .. body .. "\n")
  end
end
