-- lua/larder.lua across an arena larderd replaces (ffi/tests/lua.rs plays larderd's part,
-- told by each line this prints, and answers "go" on stdin once it has replaced it).
local larder = require "larder"
local d = assert(larder.open(assert(arg[1], "usage: replaced.lua ARENA")))

local function step(say)
    io.write(say, "\n")
    io.flush()
    assert(io.read("*l") == "go", "no go after " .. say)
end

assert(d:set("k", "old"))
step("replace")
-- Reads check every 256th time: within that many they reach the new arena.
local seen
for i = 1, 300 do
    seen = d:get("k")
    if seen == "new" then
        io.write("read follows after ", i <= 256 and "at most 256" or "more than 256", "\n")
        break
    end
end
assert(seen == "new", "reads never reached the new arena")
step("replace")
-- A write checks every time: it reaches the new arena at once.
assert(d:set("after", "written"))
io.write("k=", tostring(d:get("k")), "\n")
io.write("done\n")
