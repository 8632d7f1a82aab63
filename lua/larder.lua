-- larder for LuaJIT (nginx/OpenResty's Lua, or the luajit command): the host's larder arena
-- through liblarder's C ABI, with the API of ngx.shared.DICT, so a shared dict can be
-- swapped for it and nginx workers share items with PHP, Python and Rust processes.
--
--   local larder = require "larder"
--   local dict = assert(larder.open())            -- the default arena; or larder.open(path)
--   dict:set("k", "v", 60)                         -- ok, err, forcible
--   local v, flags = dict:get("k")
--
-- Values keep their Lua type across languages by the item's client flags (docs/bindings.md):
-- strings are stored as their bytes (flags 0), integers as decimal text (2, pymemcache's
-- int flag, so `cachectl incr`, Python and PHP read and count them), other numbers as
-- decimal text (256), booleans as "1"/"0" (512). The shared dict's own `flags` argument
-- rides in the high 16 bits (so it must be below 65536). Lists (lpush...) are not offered.
-- Every call is one FFI call into shared memory: no allocation per get beyond the Lua
-- string, no lock, and a worker killed anywhere leaves the arena whole.

local ffi = require "ffi"
local C

local M = { _VERSION = "0.1.0" }

-- BEGIN larder_ffi.h (ffi/include/larder_ffi.h, checked equal by ffi/tests/lua.rs)
ffi.cdef[[
typedef enum larder_status {
  LARDER_OK = 0,
  LARDER_NOT_FOUND = 1,
  LARDER_EXISTS = 2,
  LARDER_TOO_SMALL = 3,
  LARDER_STALE = 4,
  LARDER_LEASED = 5,
  LARDER_WAIT = 6,
  LARDER_NOT_STORED = 7,
  LARDER_END = 8,
  LARDER_E_NULL = -1,
  LARDER_E_BAD_HANDLE = -2,
  LARDER_E_INVALID_ARGUMENT = -3,
  LARDER_E_EMPTY_KEY = -4,
  LARDER_E_KEY_TOO_LARGE = -5,
  LARDER_E_VALUE_TOO_LARGE = -6,
  LARDER_E_INVALID_TTL = -7,
  LARDER_E_ARENA_FULL = -8,
  LARDER_E_OBSERVER = -9,
  LARDER_E_TOO_MANY_PROCESSES = -10,
  LARDER_E_TOO_MANY_TAGS = -11,
  LARDER_E_NOT_A_NUMBER = -12,
  LARDER_E_WRONG_LEASE = -13,
  LARDER_E_BAD_PATTERN = -14,
  LARDER_E_INVALID_CONFIG = -15,
  LARDER_E_NOT_AN_ARENA = -16,
  LARDER_E_LAYOUT_VERSION = -17,
  LARDER_E_BAD_ARENA = -18,
  LARDER_E_IO = -19,
  LARDER_E_INTERNAL = -20,
} larder_status;

typedef struct larder_cache larder_cache;

typedef struct larder_keys larder_keys;

typedef struct larder_sink larder_sink;

typedef struct larder_config {
  uint64_t capacity;
  uint32_t max_key;
  uint32_t max_value;
  uint64_t segment_size;
  uint64_t avg_item_size;
  uint32_t max_processes;
  uint32_t mode;
  uint8_t huge_pages;
} larder_config;

typedef struct larder_bytes {
  const uint8_t *ptr;
  size_t len;
} larder_bytes;

typedef struct larder_set_options {
  uint64_t ttl_ms;
  uint64_t stale_grace_ms;
  const struct larder_bytes *tags;
  size_t ntags;
  uint32_t flags;
} larder_set_options;

typedef struct larder_value {
  uint8_t *data;
  size_t len;
  int32_t found;
} larder_value;

typedef struct larder_lease {
  uint64_t words[3];
  uint64_t retry_after_ms;
} larder_lease;

typedef int32_t (*larder_loader)(void *ctx,
                                 const uint8_t *key,
                                 size_t klen,
                                 struct larder_sink *sink);

typedef struct larder_stats {
  uint64_t hits;
  uint64_t misses;
  uint64_t sets;
  uint64_t deletes;
  uint64_t touches;
  uint64_t evictions;
  uint64_t expired;
  uint64_t index_evictions;
  uint64_t rejected;
  uint64_t torn_retries;
  uint64_t corrupt;
  uint64_t reclaimed;
  uint64_t items;
  uint64_t bytes_used;
  uint64_t capacity;
  uint64_t arena_size;
  uint32_t segments;
  uint32_t free_segments;
  uint32_t processes;
} larder_stats;

struct larder_config larder_config_default(uint64_t capacity);

enum larder_status larder_create(const char *path,
                                 const struct larder_config *config,
                                 struct larder_cache **out_cache);

enum larder_status larder_open(const char *path,
                               struct larder_cache **out_cache);

enum larder_status larder_open_observer(const char *path,
                                        struct larder_cache **out_cache);

void larder_close(struct larder_cache *c);

enum larder_status larder_is_retired(const struct larder_cache *c,
                                     int *retired);

enum larder_status larder_reopen(const struct larder_cache *c,
                                 struct larder_cache **out_cache);

enum larder_status larder_limits(const struct larder_cache *c,
                                 uint32_t *max_key,
                                 uint32_t *max_value);

enum larder_status larder_path(const struct larder_cache *c,
                               uint8_t *buf,
                               size_t cap,
                               size_t *len);

const char *larder_version(void);

enum larder_status larder_get(const struct larder_cache *c,
                              const uint8_t *key,
                              size_t klen,
                              uint8_t *buf,
                              size_t cap,
                              size_t *len);

enum larder_status larder_get_alloc(const struct larder_cache *c,
                                    const uint8_t *key,
                                    size_t klen,
                                    uint8_t **value,
                                    size_t *len);

void larder_free(uint8_t *p);

enum larder_status larder_get_stale(const struct larder_cache *c,
                                    const uint8_t *key,
                                    size_t klen,
                                    uint8_t *buf,
                                    size_t cap,
                                    size_t *len);

enum larder_status larder_set(const struct larder_cache *c,
                              const uint8_t *key,
                              size_t klen,
                              const uint8_t *value,
                              size_t vlen,
                              const struct larder_set_options *opts);

enum larder_status larder_add(const struct larder_cache *c,
                              const uint8_t *key,
                              size_t klen,
                              const uint8_t *value,
                              size_t vlen,
                              const struct larder_set_options *opts);

enum larder_status larder_replace(const struct larder_cache *c,
                                  const uint8_t *key,
                                  size_t klen,
                                  const uint8_t *value,
                                  size_t vlen,
                                  const struct larder_set_options *opts);

enum larder_status larder_gets(const struct larder_cache *c,
                               const uint8_t *key,
                               size_t klen,
                               uint8_t *buf,
                               size_t cap,
                               size_t *len,
                               uint64_t *cas);

enum larder_status larder_get_flags(const struct larder_cache *c,
                                    const uint8_t *key,
                                    size_t klen,
                                    uint8_t *buf,
                                    size_t cap,
                                    size_t *len,
                                    uint32_t *flags);

enum larder_status larder_cas(const struct larder_cache *c,
                              const uint8_t *key,
                              size_t klen,
                              const uint8_t *value,
                              size_t vlen,
                              uint64_t ttl_ms,
                              uint64_t cas);

enum larder_status larder_cas_with(const struct larder_cache *c,
                                   const uint8_t *key,
                                   size_t klen,
                                   const uint8_t *value,
                                   size_t vlen,
                                   const struct larder_set_options *opts,
                                   uint64_t cas);

enum larder_status larder_delete(const struct larder_cache *c,
                                 const uint8_t *key,
                                 size_t klen);

enum larder_status larder_invalidate(const struct larder_cache *c,
                                     const uint8_t *key,
                                     size_t klen);

enum larder_status larder_invalidate_tag(const struct larder_cache *c,
                                         const uint8_t *tag,
                                         size_t len);

enum larder_status larder_incr(const struct larder_cache *c,
                               const uint8_t *key,
                               size_t klen,
                               uint64_t delta,
                               uint64_t *result);

enum larder_status larder_decr(const struct larder_cache *c,
                               const uint8_t *key,
                               size_t klen,
                               uint64_t delta,
                               uint64_t *result);

enum larder_status larder_touch(const struct larder_cache *c,
                                const uint8_t *key,
                                size_t klen,
                                uint64_t ttl_ms);

enum larder_status larder_ttl(const struct larder_cache *c,
                              const uint8_t *key,
                              size_t klen,
                              int64_t *ttl_ms);

enum larder_status larder_get_multi(const struct larder_cache *c,
                                    const struct larder_bytes *keys,
                                    size_t n,
                                    struct larder_value *values);

enum larder_status larder_flush(const struct larder_cache *c,
                                uint64_t *removed);

enum larder_status larder_keys_open(const struct larder_cache *c,
                                    const uint8_t *pattern,
                                    size_t plen,
                                    struct larder_keys **it);

enum larder_status larder_keys_next(struct larder_keys *it,
                                    uint8_t *buf,
                                    size_t cap,
                                    size_t *len);

void larder_keys_close(struct larder_keys *it);

enum larder_status larder_get_or_lease(const struct larder_cache *c,
                                       const uint8_t *key,
                                       size_t klen,
                                       uint64_t lease_ms,
                                       double early_refresh,
                                       uint8_t *buf,
                                       size_t cap,
                                       size_t *len,
                                       struct larder_lease *lease);

enum larder_status larder_fill_lease(const struct larder_cache *c,
                                     const uint8_t *key,
                                     size_t klen,
                                     const struct larder_lease *lease,
                                     const uint8_t *value,
                                     size_t vlen,
                                     const struct larder_set_options *opts);

enum larder_status larder_release_lease(const struct larder_cache *c,
                                        const uint8_t *key,
                                        size_t klen,
                                        const struct larder_lease *lease);

enum larder_status larder_loaded(struct larder_sink *sink,
                                 const uint8_t *value,
                                 size_t len);

enum larder_status larder_get_or_load(const struct larder_cache *c,
                                      const uint8_t *key,
                                      size_t klen,
                                      uint64_t lease_ms,
                                      const struct larder_set_options *opts,
                                      larder_loader loader,
                                      void *ctx,
                                      uint8_t *buf,
                                      size_t cap,
                                      size_t *len);

enum larder_status larder_get_stats(const struct larder_cache *c,
                                    struct larder_stats *stats);

const char *larder_strerror(int32_t code);

const char *larder_last_error(void);
]]
-- END larder_ffi.h

local T_STRING, T_INT, T_FLOAT, T_BOOL = 0, 2, 256, 512
local TYPE_MASK = 0xffff
local USER_SHIFT = 65536

local function load_library()
    if C then
        return C
    end
    local name = os.getenv("LARDER_LIB") or "larder"
    local ok, lib = pcall(ffi.load, name)
    if not ok then
        return nil, "cannot load liblarder (" .. name .. "): " .. tostring(lib)
    end
    C = lib
    return C
end

local function last_error(code)
    local msg = C.larder_last_error()
    if msg ~= nil then
        local s = ffi.string(msg)
        if s ~= "" then
            return s
        end
    end
    return ffi.string(C.larder_strerror(code))
end

local Dict = {}
Dict.__index = Dict

-- One handle per arena path per worker (process), re-opened once the daemon replaced the
-- arena (larder_is_retired).
local handles = {}

local function gc_close(h)
    C.larder_close(h)
end

local function open_handle(path)
    local out = ffi.new("larder_cache*[1]")
    local rc = C.larder_open(path, out)
    if rc ~= 0 then
        return nil, last_error(rc)
    end
    return ffi.gc(out[0], gc_close)
end

function M.open(path)
    local lib, err = load_library()
    if not lib then
        return nil, err
    end
    local key = path or ""
    local d = handles[key]
    if d then
        return d
    end
    local h
    h, err = open_handle(path)
    if not h then
        return nil, err
    end
    d = setmetatable({
        path = path,
        h = h,
        cap = 4096,
        buf = ffi.new("uint8_t[?]", 4096),
        len = ffi.new("size_t[1]"),
        flags = ffi.new("uint32_t[1]"),
        u64 = ffi.new("uint64_t[1]"),
        i64 = ffi.new("int64_t[1]"),
        retired = ffi.new("int[1]"),
        reads = 0,
        opts = ffi.new("larder_set_options"),
    }, Dict)
    handles[key] = d
    return d
end

-- Reads between two checks that the arena was not replaced: a read of a replaced arena
-- sees what it held when larderd moved it aside, so it may lag by that many reads; every
-- write checks (a write into a replaced arena would be lost to the other processes).
local READS_PER_CHECK = 256

-- The handle to use: the arena's current one (a replaced arena is re-opened).
function Dict:handle(write)
    if not write then
        local n = self.reads + 1
        if n < READS_PER_CHECK then
            self.reads = n
            return self.h
        end
    end
    self.reads = 0
    if C.larder_is_retired(self.h, self.retired) == 0 and self.retired[0] ~= 0 then
        local h = open_handle(self.path)
        if h then
            self.h = h
        end
    end
    return self.h
end

local function encode(value, user)
    local t = type(value)
    local bytes, ty
    if t == "string" then
        bytes, ty = value, T_STRING
    elseif t == "number" then
        if value == math.floor(value) and value >= -2^53 and value <= 2^53 then
            bytes, ty = string.format("%d", value), T_INT
        else
            bytes, ty = string.format("%.17g", value), T_FLOAT
        end
    elseif t == "boolean" then
        bytes, ty = value and "1" or "0", T_BOOL
    else
        return nil, nil, "bad value type"
    end
    user = user or 0
    if type(user) ~= "number" or user < 0 or user >= USER_SHIFT or user ~= math.floor(user) then
        return nil, nil, "flags must be an integer from 0 to 65535"
    end
    return bytes, ty + user * USER_SHIFT
end

local function decode(bytes, flags)
    local ty = bit.band(flags, TYPE_MASK)
    local user = math.floor(flags / USER_SHIFT)
    if ty == T_INT or ty == T_FLOAT then
        return tonumber(bytes), user
    elseif ty == T_BOOL then
        return bytes == "1", user
    end
    return bytes, user
end

-- A read whose value was longer than the buffer: grow it to the length reported and read
-- again (the value may have grown meanwhile: repeat).
local function read_grown(self, fetch, h, key)
    local rc
    repeat
        self.cap = tonumber(self.len[0])
        self.buf = ffi.new("uint8_t[?]", self.cap)
        rc = fetch(h, key, #key, self.buf, self.cap, self.len, self.flags)
    until rc ~= C.LARDER_TOO_SMALL
    return rc
end

-- Reads key through `fetch` (larder_get_flags or larder_get_stale). No loop here: a loop
-- inside the function every get runs would abort the JIT's traces of the caller's loops
-- ("inner loop in root trace"), and an uncompiled get costs five times a compiled one.
local function read(self, fetch, key)
    local h = self:handle()
    local rc = fetch(h, key, #key, self.buf, self.cap, self.len, self.flags)
    if rc == C.LARDER_TOO_SMALL then
        return read_grown(self, fetch, h, key)
    end
    return rc
end

local function get_flags(h, key, klen, buf, cap, len, flags)
    return C.larder_get_flags(h, key, klen, buf, cap, len, flags)
end

local function get_stale(h, key, klen, buf, cap, len, flags)
    flags[0] = 0
    return C.larder_get_stale(h, key, klen, buf, cap, len)
end

local function check_key(key)
    if type(key) ~= "string" then
        return "bad key type"
    end
    if key == "" then
        return "empty key"
    end
end

-- value, flags (nil flags when 0, as the shared dict) | nil | nil, err
function Dict:get(key)
    local e = check_key(key)
    if e then
        return nil, e
    end
    local rc = read(self, get_flags, key)
    if rc == C.LARDER_NOT_FOUND then
        return nil
    elseif rc ~= 0 then
        return nil, last_error(rc)
    end
    local v, user = decode(ffi.string(self.buf, tonumber(self.len[0])), self.flags[0])
    if user == 0 then
        user = nil
    end
    return v, user
end

-- value, flags, stale: a value past its TTL within its stale grace is served with stale
-- true. (larder does not keep an item's flags for a stale read: strings come back as
-- strings.)
function Dict:get_stale(key)
    local e = check_key(key)
    if e then
        return nil, e
    end
    local rc = read(self, get_stale, key)
    if rc == C.LARDER_NOT_FOUND then
        return nil
    elseif rc ~= 0 and rc ~= C.LARDER_STALE then
        return nil, last_error(rc)
    end
    return ffi.string(self.buf, tonumber(self.len[0])), nil, rc == C.LARDER_STALE
end

local function store(self, fn, key, value, exptime, flags)
    local e = check_key(key)
    if e then
        return false, e, false
    end
    if value == nil then
        if fn == C.larder_set then
            self:delete(key)
            return true, nil, false
        end
        return false, "bad value type", false
    end
    exptime = exptime or 0
    if type(exptime) ~= "number" or exptime < 0 then
        return false, "bad exptime", false
    end
    local bytes, f, err = encode(value, flags)
    if not bytes then
        return false, err, false
    end
    local o = self.opts
    o.ttl_ms = math.ceil(exptime * 1000)
    o.stale_grace_ms = 0
    o.tags = nil
    o.ntags = 0
    o.flags = f
    local rc = fn(self:handle(true), key, #key, bytes, #bytes, o)
    if rc == 0 then
        return true, nil, false
    elseif rc == C.LARDER_EXISTS or rc == C.LARDER_NOT_STORED then
        return false, "exists", false
    elseif rc == C.LARDER_NOT_FOUND then
        return false, "not found", false
    elseif rc == C.LARDER_E_ARENA_FULL then
        return false, "no memory", false
    end
    return false, last_error(rc), false
end

-- ok, err, forcible. larder makes room by its own eviction, never by a forcible removal
-- the caller must hear about, so forcible is always false and safe_set is set.
function Dict:set(key, value, exptime, flags)
    return store(self, C.larder_set, key, value, exptime, flags)
end
Dict.safe_set = Dict.set

function Dict:add(key, value, exptime, flags)
    return store(self, C.larder_add, key, value, exptime, flags)
end
Dict.safe_add = Dict.add

function Dict:replace(key, value, exptime, flags)
    return store(self, C.larder_replace, key, value, exptime, flags)
end

function Dict:delete(key)
    local e = check_key(key)
    if e then
        return nil, e
    end
    local rc = C.larder_delete(self:handle(true), key, #key)
    if rc ~= 0 and rc ~= C.LARDER_NOT_FOUND then
        return nil, last_error(rc)
    end
    return true
end

-- newval, err, forcible. larder's counters are unsigned 64-bit: a negative or fractional
-- step is refused ("not a number", the shared dict's word for a step it cannot apply).
function Dict:incr(key, value, init, init_ttl)
    local e = check_key(key)
    if e then
        return nil, e
    end
    if type(value) ~= "number" or value < 0 or value ~= math.floor(value) then
        return nil, "not a number"
    end
    local h = self:handle(true)
    for _ = 1, 3 do
        local rc = C.larder_incr(h, key, #key, value, self.u64)
        if rc == 0 then
            return tonumber(self.u64[0]), nil, false
        elseif rc == C.LARDER_E_NOT_A_NUMBER then
            return nil, "not a number"
        elseif rc ~= C.LARDER_NOT_FOUND then
            return nil, last_error(rc)
        end
        if init == nil then
            return nil, "not found"
        end
        if type(init) ~= "number" or init < 0 or init ~= math.floor(init) then
            return nil, "not a number"
        end
        -- Created at init + value; if another worker created it first, count on it.
        local ok, err = self:add(key, init + value, init_ttl)
        if ok then
            return init + value, nil, false
        elseif err ~= "exists" then
            return nil, err
        end
    end
    return nil, "busy"
end

-- seconds left (0: never expires) | nil, "not found"
function Dict:ttl(key)
    local e = check_key(key)
    if e then
        return nil, e
    end
    local rc = C.larder_ttl(self:handle(), key, #key, self.i64)
    if rc == C.LARDER_NOT_FOUND then
        return nil, "not found"
    elseif rc ~= 0 then
        return nil, last_error(rc)
    end
    local ms = tonumber(self.i64[0])
    if ms < 0 then
        return 0
    end
    return ms / 1000
end

-- true | nil, "not found". exptime 0: never expires.
function Dict:expire(key, exptime)
    local e = check_key(key)
    if e then
        return nil, e
    end
    if type(exptime) ~= "number" or exptime < 0 then
        return nil, "bad exptime"
    end
    local rc = C.larder_touch(self:handle(true), key, #key, math.ceil(exptime * 1000))
    if rc == C.LARDER_NOT_FOUND then
        return nil, "not found"
    elseif rc ~= 0 then
        return nil, last_error(rc)
    end
    return true
end

function Dict:flush_all()
    C.larder_flush(self:handle(true), self.u64)
end

-- larderd sweeps expired items itself; there is nothing left to flush: 0.
function Dict:flush_expired()
    return 0
end

-- Up to max keys (default 1024; 0: all), in no particular order.
function Dict:get_keys(max)
    max = max or 1024
    local it = ffi.new("larder_keys*[1]")
    local rc = C.larder_keys_open(self:handle(), "*", 1, it)
    if rc ~= 0 then
        return nil, last_error(rc)
    end
    local keys, buf, len = {}, ffi.new("uint8_t[256]"), ffi.new("size_t[1]")
    while max == 0 or #keys < max do
        rc = C.larder_keys_next(it[0], buf, 256, len)
        if rc ~= 0 then
            break
        end
        keys[#keys + 1] = ffi.string(buf, len[0])
    end
    C.larder_keys_close(it[0])
    return keys
end

local function stats(self)
    local s = ffi.new("larder_stats")
    local rc = C.larder_get_stats(self:handle(), s)
    if rc ~= 0 then
        return nil, last_error(rc)
    end
    return s
end

-- Bytes the arena holds items in.
function Dict:capacity()
    local s, err = stats(self)
    if not s then
        return nil, err
    end
    return tonumber(s.capacity)
end

-- Bytes not taken by items (larder evicts the oldest to make room when it runs out).
function Dict:free_space()
    local s, err = stats(self)
    if not s then
        return nil, err
    end
    return tonumber(s.capacity - s.bytes_used)
end

return M
