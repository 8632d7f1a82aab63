-- The ngx.shared.DICT-shaped API of lua/larder.lua under the luajit command, against a
-- real arena (run by ffi/tests/lua.rs, which checks from Rust what this wrote and wrote
-- what this reads). Every check raises on failure; the last line is "RESULT ok".
--
--   LARDER_LIB=.../liblarder.so LUA_PATH="lua/?.lua;;" luajit lua/tests/dict_test.lua ARENA

local larder = require "larder"
local arena = assert(arg[1], "usage: dict_test.lua ARENA")

local function eq(got, want, what)
    if got ~= want then
        error(string.format("%s: got %s (%s), want %s (%s)", what, tostring(got), type(got),
            tostring(want), type(want)), 2)
    end
end

local d = assert(larder.open(arena))
eq(larder.open(arena), d, "one handle per arena per worker")
local missing, err = larder.open("/nonexistent/arena")
eq(missing, nil, "open of a missing arena")
assert(err and #err > 0, "open of a missing arena says why")

-- Types survive the round trip, and the shared dict's flags ride along.
eq(d:set("s", "hello"), true, "set string")
eq(d:get("s"), "hello", "get string")
eq(select(2, d:get("s")), nil, "no flags: nil, as the shared dict")
eq(d:set("n", 42), true, "set integer")
eq(d:get("n"), 42, "get integer")
eq(d:set("f", 0.25), true, "set float")
eq(d:get("f"), 0.25, "get float")
eq(d:set("b", false), true, "set boolean")
eq(d:get("b"), false, "get boolean")
eq(d:set("u", "x", 0, 7), true, "set with flags")
local v, flags = d:get("u")
eq(v, "x", "value with flags")
eq(flags, 7, "flags back")
eq(select(2, d:set("u", "x", 0, 65536)), "flags must be an integer from 0 to 65535", "flags too large")
eq(select(2, d:set("t", {})), "bad value type", "a table is refused")
eq(select(2, d:get("")), "empty key", "empty key")
eq(select(2, d:get(string.rep("k", 300))) ~= nil, true, "a key too long is an error")
local big = string.rep("v", 10000)
eq(d:set("big", big), true, "a value larger than the first buffer")
eq(d:get("big"), big, "read back whole")
eq(d:get("absent"), nil, "miss")

-- add / replace / delete, with the shared dict's words.
eq(d:add("n", 1), false, "add of a present key")
eq(select(2, d:add("n", 1)), "exists", "add says exists")
eq(d:safe_add("new", "1"), true, "safe_add of a new key")
eq(select(2, d:replace("absent", 1)), "not found", "replace of a missing key")
eq(d:replace("new", "2"), true, "replace")
eq(d:get("new"), "2", "replaced")
eq(d:delete("new"), true, "delete")
eq(d:get("new"), nil, "deleted")
eq(d:set("gone", nil), true, "set nil deletes")

-- Counters: decimal text, so every language counts them.
eq(d:incr("c", 1), nil, "incr of a missing key")
eq(select(2, d:incr("c", 1)), "not found", "incr says not found")
eq(d:incr("c", 5, 10), 15, "incr with init")
eq(d:incr("c", 1), 16, "incr")
eq(d:get("c"), 16, "a counter reads as a number")
eq(select(2, d:incr("c", -1)), "not a number", "a negative step is refused")
eq(select(2, d:incr("s", 1)), "not a number", "incr of a string")
eq(d:incr("rust:n", 1), 8, "incr of the counter Rust stored as text")

-- TTLs.
eq(d:set("ttl", "v", 100), true, "set with exptime")
local left = d:ttl("ttl")
assert(left > 98 and left <= 100, "ttl " .. tostring(left))
eq(d:ttl("s"), 0, "no expiry: 0")
eq(select(2, d:ttl("absent")), "not found", "ttl of a missing key")
eq(d:expire("s", 50), true, "expire")
assert(d:ttl("s") > 48, "expire took")
eq(d:expire("s", 0), true, "expire 0: never")
eq(d:ttl("s"), 0, "never expires again")
eq(select(2, d:expire("absent", 5)), "not found", "expire of a missing key")
eq(select(2, d:set("x", "v", -1)), "bad exptime", "negative exptime")

-- What Rust stored reads here.
eq(d:get("rust:str"), "from rust", "a Rust string")

-- Keys, capacity.
local keys = d:get_keys(0)
local seen = {}
for _, k in ipairs(keys) do
    seen[k] = true
end
assert(seen["s"] and seen["n"] and seen["c"], "get_keys lists the keys")
eq(#d:get_keys(2), 2, "get_keys(max)")
assert(d:capacity() > 0 and d:free_space() <= d:capacity(), "capacity and free space")
eq(d:flush_expired(), 0, "flush_expired")

-- What Rust checks after this script.
assert(d:set("lua:int", 42))
assert(d:set("lua:str", "from lua"))
assert(d:set("lua:user", "u", 0, 7))

-- flush_all last (on a key of its own arena copy, so the checks above stay).
print("RESULT ok")
