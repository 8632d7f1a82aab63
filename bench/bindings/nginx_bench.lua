-- Inside one nginx worker (bench/bindings.sh): a GET of a 100 B value through larder
-- (lua/larder.lua) against ngx.shared.DICT:get, in interleaved rounds, timed with
-- clock_gettime(CLOCK_MONOTONIC) through the FFI (ngx.now is cached per event-loop turn).
-- Prints one line per system: "<name> <median ns per get> <min> <max>".
local ffi = require "ffi"
pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } larder_bench_timespec;
int clock_gettime(int clk, larder_bench_timespec *tp);
]])
local ts = ffi.new("larder_bench_timespec")
local function now_ns()
    ffi.C.clock_gettime(1, ts)
    return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end

local KEYS, ROUNDS, OPS = 10000, tonumber(ngx.var.arg_rounds) or 7, tonumber(ngx.var.arg_ops) or 200000
local value = string.rep("v", 100)
local dict = assert(require("larder").open(os.getenv("ARENA")))
local shd = ngx.shared.bench
local keys = {}
for i = 1, KEYS do
    keys[i] = "key:" .. i
    assert(dict:set(keys[i], value))
    assert(shd:set(keys[i], value))
end

local systems = {
    { "larder get", function(k) return dict:get(k) end },
    { "ngx.shared.DICT get", function(k) return shd:get(k) end },
}
-- Each system's timing loop is compiled from its own copy of the source: LuaJIT keeps
-- one trace per loop of a function prototype, so one loop shared by both systems would
-- keep switching between two callees and measure the JIT's side exits, not the gets.
local LOOP = [[
local get, keys, KEYS, OPS, now_ns = ...
local x, n = 12345, 0
local t0 = now_ns()
for _ = 1, OPS do
    x = (x * 1103515245 + 12345) % 2147483648
    n = n + #get(keys[x % KEYS + 1])
end
return (now_ns() - t0) / OPS, n
]]
local results = {}
for _, s in ipairs(systems) do
    results[s[1]] = {}
    s[3] = assert(loadstring(LOOP, "=loop " .. s[1]))
end
for _ = 1, ROUNDS do
    for _, s in ipairs(systems) do
        local t, n = s[3](s[2], keys, KEYS, OPS, now_ns)
        assert(n == OPS * 100)
        table.insert(results[s[1]], t)
    end
end
for _, s in ipairs(systems) do
    local r = results[s[1]]
    table.sort(r)
    ngx.say(string.format("%s %.1f %.1f %.1f", s[1], r[math.ceil(#r / 2)], r[1], r[#r]))
end
