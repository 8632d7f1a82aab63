/*
 * The C side of ffi/tests/c_abi.rs: a C program on liblarder, run as separate processes
 * beside Rust ones and under valgrind. Each mode exits 0 when every check passed.
 *
 *   abi_test statuses DIR      every status code the ABI can return, on arenas in DIR
 *   abi_test read ARENA N      verifies the N values a Rust process wrote ("rust:<i>")
 *   abi_test write ARENA N     writes N checksummed values for Rust to verify ("c:<i>")
 *   abi_test lease ARENA       the two-call lease between this process and a forked one
 *   abi_test fork ARENA        a handle opened before fork() used by four children
 *   abi_test bench ARENA N OPS times OPS larder_get of N keys "k:%010u" (ffi/benches/abi.rs)
 *
 * Values carry their key, a sequence number and an FNV-1a checksum, in the format of
 * larder-testkit's make_value (testkit/src/values.rs), so either language checks the other.
 */
#include "larder.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                             \
            fprintf(stderr, " (last error: %s)\n", larder_last_error());              \
            failures++;                                                               \
        }                                                                             \
    } while (0)

#define EXPECT(call, want)                                                            \
    do {                                                                              \
        larder_status st_ = (call);                                                   \
        CHECK(st_ == (want), "%s returned %d (%s), want %s", #call, (int)st_,         \
              larder_strerror(st_), #want);                                           \
    } while (0)

/* A NUL-terminated literal as (pointer, length). */
#define K(s) (const uint8_t *)(s), strlen(s)

static void die(const char *what) {
    fprintf(stderr, "abi_test: %s: %s (last error: %s)\n", what, strerror(errno),
            larder_last_error());
    exit(2);
}

/* ---- values in the testkit's format ------------------------------------------------ */

static uint64_t fnv(const uint8_t *b, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Writes the value for (key, seq) of `len` bytes (at least klen + 18) into out. */
static size_t make_value(const uint8_t *key, size_t klen, uint64_t seq, size_t len,
                         uint8_t *out) {
    if (len < klen + 18) len = klen + 18;
    size_t n = 0;
    out[n++] = (uint8_t)klen;
    out[n++] = (uint8_t)(klen >> 8);
    memcpy(out + n, key, klen);
    n += klen;
    put64(out + n, seq);
    n += 8;
    uint64_t x = seq ^ 0x9e3779b97f4a7c15ULL;
    while (n < len - 8) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        out[n++] = (uint8_t)(x >> 56);
    }
    put64(out + n, fnv(out, n));
    return n + 8;
}

/* 0 and *seq when v is the value some writer made for key; -1 otherwise. */
static int check_value(const uint8_t *key, size_t klen, const uint8_t *v, size_t n,
                       uint64_t *seq) {
    if (n < klen + 18) return -1;
    if (fnv(v, n - 8) != get64(v + n - 8)) return -1;
    size_t vk = (size_t)v[0] | ((size_t)v[1] << 8);
    if (vk != klen || memcmp(v + 2, key, klen) != 0) return -1;
    *seq = get64(v + 2 + klen);
    return 0;
}

static larder_cache *open_arena(const char *path) {
    larder_cache *c = NULL;
    larder_status st = larder_open(path, &c);
    if (st != LARDER_OK) {
        fprintf(stderr, "abi_test: open %s: %s: %s\n", path, larder_strerror(st),
                larder_last_error());
        exit(2);
    }
    return c;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* ---- read / write: sharing an arena with a Rust process ---------------------------- */

static int mode_read(const char *arena, long n) {
    larder_cache *c = open_arena(arena);
    uint8_t buf[64];
    long verified = 0;
    for (long i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "rust:%ld", i);
        size_t len = 0;
        /* A small buffer first: values longer than 64 bytes report their length. */
        larder_status st = larder_get(c, K(key), buf, sizeof buf, &len);
        uint8_t *v = buf;
        uint8_t *big = NULL;
        if (st == LARDER_TOO_SMALL) {
            big = malloc(len);
            size_t len2 = 0;
            EXPECT(larder_get(c, K(key), big, len, &len2), LARDER_OK);
            CHECK(len2 == len, "length changed from %zu to %zu", len, len2);
            v = big;
        } else {
            CHECK(st == LARDER_OK, "get %s: %s", key, larder_strerror(st));
        }
        uint64_t seq = 0;
        if (st == LARDER_OK || st == LARDER_TOO_SMALL) {
            CHECK(check_value((const uint8_t *)key, strlen(key), v, len, &seq) == 0 &&
                      seq == (uint64_t)i,
                  "value of %s (%zu bytes) does not verify", key, len);
            verified++;
        }
        free(big);
    }
    printf("RESULT verified=%ld\n", verified);
    larder_close(c);
    return failures ? 1 : 0;
}

static int mode_write(const char *arena, long n) {
    larder_cache *c = open_arena(arena);
    uint8_t buf[4096];
    for (long i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "c:%ld", i);
        size_t len = make_value((const uint8_t *)key, strlen(key), (uint64_t)i * 3 + 1,
                                20 + (size_t)(i * 37 % 2000), buf);
        EXPECT(larder_set(c, K(key), buf, len, NULL), LARDER_OK);
    }
    printf("RESULT written=%ld\n", n);
    larder_close(c);
    return failures ? 1 : 0;
}

/* ---- the two-call lease across two processes --------------------------------------- */

/* Waits for the child and checks it exited 0. */
static void reap(pid_t pid, const char *what) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) die("waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s child ended with status %d",
          what, status);
}

static void wait_byte(int fd) {
    char b;
    if (read(fd, &b, 1) != 1) die("reading the pipe");
}

static void send_byte(int fd) {
    if (write(fd, "x", 1) != 1) die("writing the pipe");
}

/* Loaders for larder_get_or_load. */
struct load_ctx {
    larder_cache *c;
    int calls;
    pid_t child;
};

static int32_t must_not_load(void *ctx, const uint8_t *key, size_t klen, larder_sink *sink) {
    (void)key, (void)klen, (void)sink;
    ((struct load_ctx *)ctx)->calls++;
    return 1;
}

static int32_t failing_loader(void *ctx, const uint8_t *key, size_t klen, larder_sink *sink) {
    (void)key, (void)klen, (void)sink;
    ((struct load_ctx *)ctx)->calls++;
    return 7;
}

/* Loads slowly, and while it loads a forked child asks for the same key: the child must
 * wait for this value, not load it itself. */
static int32_t slow_loader(void *ctx, const uint8_t *key, size_t klen, larder_sink *sink) {
    struct load_ctx *l = ctx;
    l->calls++;
    l->child = fork();
    if (l->child < 0) die("fork");
    if (l->child == 0) {
        struct load_ctx mine = {l->c, 0, 0};
        uint8_t buf[64];
        size_t len = 0;
        EXPECT(larder_get_or_load(l->c, key, klen, 0, NULL, must_not_load, &mine, buf,
                                  sizeof buf, &len),
               LARDER_OK);
        CHECK(mine.calls == 0, "the waiting process ran its loader %d times", mine.calls);
        CHECK(len == 11 && memcmp(buf, "slow result", 11) == 0, "the loader's value");
        larder_close(l->c);
        _exit(failures ? 1 : 0);
    }
    sleep_ms(300);
    return larder_loaded(sink, K("slow result")) == LARDER_OK ? 0 : 1;
}

static int mode_lease(const char *arena) {
    larder_cache *c = open_arena(arena);
    uint8_t buf[256];
    size_t len = 0;
    larder_lease lease = {0};

    /* 1. One process holds the lease; the other waits, then gets the filled value. */
    larder_delete(c, K("lease:a"));
    EXPECT(larder_get_or_lease(c, K("lease:a"), 10000, 0, buf, sizeof buf, &len, &lease),
           LARDER_LEASED);
    int saw_wait[2];
    if (pipe(saw_wait) != 0) die("pipe");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        larder_lease other = {0};
        larder_status st =
            larder_get_or_lease(c, K("lease:a"), 10000, 0, buf, sizeof buf, &len, &other);
        CHECK(st == LARDER_WAIT, "the second process must wait, got %s", larder_strerror(st));
        CHECK(other.retry_after_ms > 0 && other.retry_after_ms <= 10000,
              "retry_after_ms %llu", (unsigned long long)other.retry_after_ms);
        send_byte(saw_wait[1]);
        for (int i = 0; i < 1000 && st == LARDER_WAIT; i++) {
            sleep_ms(other.retry_after_ms < 20 ? (long)other.retry_after_ms : 20);
            st = larder_get_or_lease(c, K("lease:a"), 10000, 0, buf, sizeof buf, &len, &other);
        }
        CHECK(st == LARDER_OK, "after the fill the waiter reads the value, got %s",
              larder_strerror(st));
        CHECK(len == 6 && memcmp(buf, "loaded", 6) == 0, "the holder's value");
        larder_close(c);
        _exit(failures ? 1 : 0);
    }
    wait_byte(saw_wait[0]);
    EXPECT(larder_fill_lease(c, K("lease:a"), &lease, K("loaded"), NULL), LARDER_OK);
    reap(pid, "waiter");

    /* 2. An invalidation by another process while the lease is held keeps the load out. */
    EXPECT(larder_get_or_lease(c, K("lease:b"), 10000, 0, buf, sizeof buf, &len, &lease),
           LARDER_LEASED);
    pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        EXPECT(larder_invalidate(c, K("lease:b")), LARDER_NOT_FOUND);
        larder_close(c);
        _exit(failures ? 1 : 0);
    }
    reap(pid, "invalidator");
    EXPECT(larder_fill_lease(c, K("lease:b"), &lease, K("stale load"), NULL),
           LARDER_NOT_STORED);
    EXPECT(larder_get(c, K("lease:b"), buf, sizeof buf, &len), LARDER_NOT_FOUND);

    /* 3. A released lease goes to the next caller, in another process. */
    EXPECT(larder_get_or_lease(c, K("lease:c"), 10000, 0, buf, sizeof buf, &len, &lease),
           LARDER_LEASED);
    EXPECT(larder_release_lease(c, K("lease:c"), &lease), LARDER_OK);
    pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        larder_lease mine = {0};
        EXPECT(larder_get_or_lease(c, K("lease:c"), 10000, 0, buf, sizeof buf, &len, &mine),
               LARDER_LEASED);
        EXPECT(larder_fill_lease(c, K("lease:c"), &mine, K("from the child"), NULL), LARDER_OK);
        larder_close(c);
        _exit(failures ? 1 : 0);
    }
    reap(pid, "next holder");
    EXPECT(larder_get(c, K("lease:c"), buf, sizeof buf, &len), LARDER_OK);
    CHECK(len == 14 && memcmp(buf, "from the child", 14) == 0, "the child's value");

    /* 4. A holder SIGKILLed while holding blocks the others only until its lease runs out. */
    int holding[2];
    if (pipe(holding) != 0) die("pipe");
    pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        larder_lease mine = {0};
        if (larder_get_or_lease(c, K("lease:d"), 400, 0, buf, sizeof buf, &len, &mine) ==
            LARDER_LEASED)
            send_byte(holding[1]);
        for (;;) pause();
    }
    wait_byte(holding[0]);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the holder died holding");
    larder_status st = LARDER_WAIT;
    int waits = 0;
    for (int i = 0; i < 500 && st == LARDER_WAIT; i++) {
        st = larder_get_or_lease(c, K("lease:d"), 10000, 0, buf, sizeof buf, &len, &lease);
        if (st == LARDER_WAIT) {
            waits++;
            sleep_ms(10);
        }
    }
    CHECK(st == LARDER_LEASED, "the dead holder's lease runs out, got %s", larder_strerror(st));
    CHECK(waits > 0, "the dead holder's lease was still held at first");
    EXPECT(larder_release_lease(c, K("lease:d"), &lease), LARDER_OK);

    /* 5. The callback form: one load across processes, failures not cached. */
    struct load_ctx l = {c, 0, 0};
    EXPECT(larder_get_or_load(c, K("load:a"), 0, NULL, slow_loader, &l, buf, sizeof buf, &len),
           LARDER_OK);
    CHECK(l.calls == 1 && len == 11, "one load, its value");
    reap(l.child, "get_or_load waiter");
    l.calls = 0;
    EXPECT(larder_get_or_load(c, K("load:a"), 0, NULL, must_not_load, &l, buf, sizeof buf, &len),
           LARDER_OK);
    CHECK(l.calls == 0, "a hit runs no loader");
    EXPECT(larder_get_or_load(c, K("load:b"), 0, NULL, failing_loader, &l, buf, sizeof buf, &len),
           LARDER_NOT_FOUND);
    EXPECT(larder_get_or_load(c, K("load:b"), 0, NULL, failing_loader, &l, buf, sizeof buf, &len),
           LARDER_NOT_FOUND);
    CHECK(l.calls == 2, "a failed load is not cached and gives the lease back: %d", l.calls);
    EXPECT(larder_get_or_load(c, K("load:b"), 0, NULL, NULL, &l, buf, sizeof buf, &len),
           LARDER_E_NULL);

    larder_close(c);
    printf("RESULT lease=ok\n");
    return failures ? 1 : 0;
}

/* ---- fork: a handle opened before fork() ------------------------------------------- */

static int mode_fork(const char *arena) {
    larder_cache *c = open_arena(arena);
    EXPECT(larder_set(c, K("fork:parent"), K("from the parent"), NULL), LARDER_OK);
    EXPECT(larder_set(c, K("fork:counter"), K("0"), NULL), LARDER_OK);
    pid_t kids[4];
    for (int k = 0; k < 4; k++) {
        kids[k] = fork();
        if (kids[k] < 0) die("fork");
        if (kids[k] == 0) {
            uint8_t buf[64];
            size_t len = 0;
            EXPECT(larder_get(c, K("fork:parent"), buf, sizeof buf, &len), LARDER_OK);
            CHECK(len == 15 && memcmp(buf, "from the parent", 15) == 0, "parent's value");
            char key[32];
            snprintf(key, sizeof key, "fork:child:%d", k);
            EXPECT(larder_set(c, K(key), K(key), NULL), LARDER_OK);
            for (int i = 0; i < 100; i++) {
                uint64_t v = 0;
                EXPECT(larder_incr(c, K("fork:counter"), 1, &v), LARDER_OK);
            }
            larder_close(c);
            _exit(failures ? 1 : 0);
        }
    }
    for (int k = 0; k < 4; k++) reap(kids[k], "forked");
    uint64_t total = 0;
    EXPECT(larder_incr(c, K("fork:counter"), 0, &total), LARDER_OK);
    CHECK(total == 400, "4 children x 100 increments, counter says %llu",
          (unsigned long long)total);
    for (int k = 0; k < 4; k++) {
        char key[32];
        uint8_t buf[64];
        size_t len = 0;
        snprintf(key, sizeof key, "fork:child:%d", k);
        EXPECT(larder_get(c, K(key), buf, sizeof buf, &len), LARDER_OK);
        CHECK(len == strlen(key) && memcmp(buf, key, len) == 0, "child %d's value", k);
    }
    larder_stats s;
    EXPECT(larder_get_stats(c, &s), LARDER_OK);
    CHECK(s.processes == 1, "the children's slots are reaped or released: %u attached",
          s.processes);
    larder_close(c);
    printf("RESULT fork=ok\n");
    return failures ? 1 : 0;
}

/* ---- every status code ------------------------------------------------------------- */

static larder_cache *create_small(const char *path, uint32_t max_processes) {
    larder_config cfg = larder_config_default(4 << 20);
    cfg.max_value = 4096;
    cfg.segment_size = 64 << 10;
    cfg.max_processes = max_processes;
    cfg.huge_pages = 0;
    larder_cache *c = NULL;
    larder_status st = larder_create(path, &cfg, &c);
    if (st != LARDER_OK) {
        fprintf(stderr, "abi_test: create %s: %s\n", path, larder_last_error());
        exit(2);
    }
    return c;
}

static void patch(const char *path, long off, const void *bytes, size_t n) {
    int fd = open(path, O_WRONLY);
    if (fd < 0 || pwrite(fd, bytes, n, off) != (ssize_t)n) die("patching the arena");
    close(fd);
}

/* Reads `n` bytes at `off`. */
static void peek(const char *path, long off, void *bytes, size_t n) {
    int fd = open(path, O_RDONLY);
    if (fd < 0 || pread(fd, bytes, n, off) != (ssize_t)n) die("reading the arena");
    close(fd);
}

/* Flips the low bit of the byte at `off`. */
static void flip(const char *path, long off) {
    uint8_t b = 0;
    int fd = open(path, O_RDWR);
    if (fd < 0 || pread(fd, &b, 1, off) != 1) die("reading the arena");
    b ^= 1;
    if (pwrite(fd, &b, 1, off) != 1) die("patching the arena");
    close(fd);
}

static int mode_statuses(const char *dir) {
    char path[512], other[512];
    snprintf(path, sizeof path, "%s/statuses", dir);
    larder_cache *c = create_small(path, 16);
    uint8_t buf[8192];
    size_t len = 0;
    uint64_t n = 0;

    /* Outcomes. */
    EXPECT(larder_get(c, K("k"), buf, sizeof buf, &len), LARDER_NOT_FOUND);
    EXPECT(larder_set(c, K("k"), K("value"), NULL), LARDER_OK);
    EXPECT(larder_get(c, K("k"), buf, sizeof buf, &len), LARDER_OK);
    CHECK(len == 5 && memcmp(buf, "value", 5) == 0, "read back");
    EXPECT(larder_get(c, K("k"), buf, 2, &len), LARDER_TOO_SMALL);
    CHECK(len == 5, "TOO_SMALL reports the length needed: %zu", len);
    EXPECT(larder_get(c, K("k"), NULL, 0, &len), LARDER_TOO_SMALL);
    EXPECT(larder_add(c, K("k"), K("other"), NULL), LARDER_EXISTS);
    EXPECT(larder_replace(c, K("absent"), K("x"), NULL), LARDER_NOT_FOUND);
    EXPECT(larder_replace(c, K("k"), K("replaced"), NULL), LARDER_OK);
    uint64_t cas = 0;
    EXPECT(larder_gets(c, K("k"), buf, sizeof buf, &len, &cas), LARDER_OK);
    EXPECT(larder_set(c, K("k"), K("changed"), NULL), LARDER_OK);
    EXPECT(larder_cas(c, K("k"), K("lost"), 0, cas), LARDER_EXISTS);
    EXPECT(larder_gets(c, K("k"), buf, sizeof buf, &len, &cas), LARDER_OK);
    EXPECT(larder_cas(c, K("k"), K("won"), 0, cas), LARDER_OK);
    EXPECT(larder_cas(c, K("absent"), K("x"), 0, cas), LARDER_NOT_FOUND);
    EXPECT(larder_delete(c, K("k")), LARDER_OK);
    EXPECT(larder_delete(c, K("k")), LARDER_NOT_FOUND);
    uint8_t *owned = NULL;
    EXPECT(larder_set(c, K("owned"), K("library buffer"), NULL), LARDER_OK);
    EXPECT(larder_get_alloc(c, K("owned"), &owned, &len), LARDER_OK);
    CHECK(owned && len == 14 && memcmp(owned, "library buffer", 14) == 0, "get_alloc");
    larder_free(owned);
    EXPECT(larder_get_alloc(c, K("absent"), &owned, &len), LARDER_NOT_FOUND);
    CHECK(owned == NULL, "NOT_FOUND leaves *value NULL");

    /* Counters, touch and ttl. */
    EXPECT(larder_set(c, K("n"), K("41"), NULL), LARDER_OK);
    EXPECT(larder_incr(c, K("n"), 1, &n), LARDER_OK);
    CHECK(n == 42, "incr: %llu", (unsigned long long)n);
    EXPECT(larder_decr(c, K("n"), 100, &n), LARDER_OK);
    CHECK(n == 0, "decr stops at 0: %llu", (unsigned long long)n);
    EXPECT(larder_incr(c, K("absent"), 1, &n), LARDER_NOT_FOUND);
    int64_t ttl = 0;
    EXPECT(larder_ttl(c, K("n"), &ttl), LARDER_OK);
    CHECK(ttl == -1, "no TTL is -1: %lld", (long long)ttl);
    EXPECT(larder_touch(c, K("n"), 60000), LARDER_OK);
    EXPECT(larder_ttl(c, K("n"), &ttl), LARDER_OK);
    CHECK(ttl > 58000 && ttl <= 60000, "ttl after touch: %lld", (long long)ttl);
    EXPECT(larder_touch(c, K("absent"), 1000), LARDER_NOT_FOUND);
    EXPECT(larder_ttl(c, K("absent"), &ttl), LARDER_NOT_FOUND);

    /* Tags, get_multi, keys, stats, flush. */
    larder_bytes tags[9];
    for (int i = 0; i < 9; i++) {
        tags[i].ptr = (const uint8_t *)"tag";
        tags[i].len = 3;
    }
    /* Client flags: kept with the item, read back by larder_get_flags (0 without). */
    larder_set_options flagged = {0, 0, NULL, 0, 0xC0FFEEu};
    uint32_t flags = 1;
    EXPECT(larder_set(c, K("fl"), K("flagged"), &flagged), LARDER_OK);
    EXPECT(larder_get_flags(c, K("fl"), buf, sizeof buf, &len, &flags), LARDER_OK);
    CHECK(flags == 0xC0FFEEu && len == 7 && memcmp(buf, "flagged", 7) == 0, "flags %u", flags);
    EXPECT(larder_set(c, K("fl"), K("plain"), NULL), LARDER_OK);
    EXPECT(larder_get_flags(c, K("fl"), buf, sizeof buf, &len, &flags), LARDER_OK);
    CHECK(flags == 0, "flags after a plain set %u", flags);
    EXPECT(larder_get_flags(c, K("absent"), buf, sizeof buf, &len, &flags), LARDER_NOT_FOUND);
    EXPECT(larder_get_flags(c, K("fl"), buf, sizeof buf, &len, NULL), LARDER_E_NULL);
    larder_set_options tagged = {0, 0, tags, 1, 0};
    EXPECT(larder_set(c, K("t1"), K("tagged"), &tagged), LARDER_OK);
    EXPECT(larder_invalidate_tag(c, K("tag")), LARDER_OK);
    EXPECT(larder_get(c, K("t1"), buf, sizeof buf, &len), LARDER_NOT_FOUND);
    larder_bytes keys[3] = {{(const uint8_t *)"m1", 2}, {(const uint8_t *)"absent", 6},
                            {(const uint8_t *)"m2", 2}};
    EXPECT(larder_set(c, K("m1"), K("one"), NULL), LARDER_OK);
    EXPECT(larder_set(c, K("m2"), K("two"), NULL), LARDER_OK);
    larder_value vals[3];
    EXPECT(larder_get_multi(c, keys, 3, vals), LARDER_OK);
    CHECK(vals[0].found && vals[0].len == 3 && memcmp(vals[0].data, "one", 3) == 0, "m1");
    CHECK(!vals[1].found && vals[1].data == NULL, "absent");
    CHECK(vals[2].found && vals[2].len == 3 && memcmp(vals[2].data, "two", 3) == 0, "m2");
    for (int i = 0; i < 3; i++) larder_free(vals[i].data);
    larder_keys *it = NULL;
    EXPECT(larder_keys_open(c, K("m*"), &it), LARDER_OK);
    int seen = 0;
    larder_status st;
    while ((st = larder_keys_next(it, buf, 1, &len)) == LARDER_TOO_SMALL) {
        CHECK(len == 2, "key length %zu", len);
        EXPECT(larder_keys_next(it, buf, sizeof buf, &len), LARDER_OK);
        CHECK(len == 2 && buf[0] == 'm', "a key matching m*");
        seen++;
    }
    CHECK(st == LARDER_END, "keys end with LARDER_END, got %s", larder_strerror(st));
    CHECK(seen == 2, "two keys match m*, saw %d", seen);
    larder_keys_close(it);
    EXPECT(larder_keys_open(c, K("[m"), &it), LARDER_E_BAD_PATTERN);
    CHECK(it == NULL, "no cursor for a bad pattern");
    larder_stats s;
    EXPECT(larder_get_stats(c, &s), LARDER_OK);
    CHECK(s.sets >= 10 && s.hits >= 5 && s.items >= 3 && s.processes == 1,
          "stats: sets %llu hits %llu items %llu processes %u", (unsigned long long)s.sets,
          (unsigned long long)s.hits, (unsigned long long)s.items, s.processes);
    uint32_t max_key = 0, max_value = 0;
    EXPECT(larder_limits(c, &max_key, &max_value), LARDER_OK);
    CHECK(max_key == 250 && max_value == 4096, "limits %u %u", max_key, max_value);
    EXPECT(larder_path(c, buf, sizeof buf, &len), LARDER_OK);
    CHECK(len == strlen(path) && memcmp(buf, path, len) == 0, "path");
    int retired = -1;
    EXPECT(larder_is_retired(c, &retired), LARDER_OK);
    CHECK(retired == 0, "a fresh arena is not retired");
    larder_cache *again = NULL;
    EXPECT(larder_reopen(c, &again), LARDER_OK);
    EXPECT(larder_get(again, K("m1"), buf, sizeof buf, &len), LARDER_OK);
    larder_close(again);
    EXPECT(larder_flush(c, &n), LARDER_OK);
    CHECK(n >= 3, "flush removed %llu", (unsigned long long)n);
    EXPECT(larder_get(c, K("m1"), buf, sizeof buf, &len), LARDER_NOT_FOUND);

    /* Stale reads and the lease outcomes in one process. */
    larder_set_options graced = {1000, 60000, NULL, 0, 0};
    EXPECT(larder_set(c, K("s"), K("old"), &graced), LARDER_OK);
    EXPECT(larder_get_stale(c, K("s"), buf, sizeof buf, &len), LARDER_OK);
    sleep_ms(2100);
    EXPECT(larder_get(c, K("s"), buf, sizeof buf, &len), LARDER_NOT_FOUND);
    EXPECT(larder_get_stale(c, K("s"), buf, sizeof buf, &len), LARDER_STALE);
    CHECK(len == 3 && memcmp(buf, "old", 3) == 0, "the stale value");
    larder_lease lease = {0}, second = {0};
    EXPECT(larder_get_or_lease(c, K("s"), 0, 0, buf, sizeof buf, &len, &lease), LARDER_LEASED);
    EXPECT(larder_get_or_lease(c, K("s"), 0, 0, buf, sizeof buf, &len, &second), LARDER_STALE);
    EXPECT(larder_fill_lease(c, K("other"), &lease, K("x"), NULL), LARDER_E_WRONG_LEASE);
    EXPECT(larder_fill_lease(c, K("s"), &lease, K("new"), &graced), LARDER_OK);
    EXPECT(larder_get_or_lease(c, K("s"), 0, 0, buf, sizeof buf, &len, &second), LARDER_OK);
    EXPECT(larder_get_or_lease(c, K("w"), 0, 0, buf, sizeof buf, &len, &lease), LARDER_LEASED);
    EXPECT(larder_get_or_lease(c, K("w"), 0, 0, buf, sizeof buf, &len, &second), LARDER_WAIT);
    EXPECT(larder_invalidate(c, K("w")), LARDER_NOT_FOUND);
    EXPECT(larder_fill_lease(c, K("w"), &lease, K("x"), NULL), LARDER_NOT_STORED);
    EXPECT(larder_get_or_lease(c, K("w"), 0, -1.0, buf, sizeof buf, &len, &lease),
           LARDER_E_INVALID_ARGUMENT);

    /* Errors of operations. */
    EXPECT(larder_get(NULL, K("k"), buf, sizeof buf, &len), LARDER_E_NULL);
    EXPECT(larder_get(c, NULL, 1, buf, sizeof buf, &len), LARDER_E_NULL);
    EXPECT(larder_get(c, K("k"), buf, sizeof buf, NULL), LARDER_E_NULL);
    EXPECT(larder_set(c, K("k"), NULL, 3, NULL), LARDER_E_NULL);
    uint64_t fake[16] = {0};
    EXPECT(larder_get((const larder_cache *)fake, K("k"), buf, sizeof buf, &len),
           LARDER_E_BAD_HANDLE);
    CHECK(strstr(larder_last_error(), "handle") != NULL, "last error names the handle: %s",
          larder_last_error());
    EXPECT(larder_get(c, NULL, 0, buf, sizeof buf, &len), LARDER_E_EMPTY_KEY);
    char long_key[300];
    memset(long_key, 'x', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = 0;
    EXPECT(larder_set(c, K(long_key), K("v"), NULL), LARDER_E_KEY_TOO_LARGE);
    CHECK(strstr(larder_last_error(), "299") != NULL, "last error names the length: %s",
          larder_last_error());
    EXPECT(larder_set(c, K("big"), buf, 4097, NULL), LARDER_E_VALUE_TOO_LARGE);
    larder_set_options forever = {UINT64_MAX, 0, NULL, 0, 0};
    EXPECT(larder_set(c, K("k"), K("v"), &forever), LARDER_E_INVALID_TTL);
    larder_set_options too_many = {0, 0, tags, 9, 0};
    EXPECT(larder_set(c, K("k"), K("v"), &too_many), LARDER_E_TOO_MANY_TAGS);
    larder_set_options null_tags = {0, 0, NULL, 2, 0};
    EXPECT(larder_set(c, K("k"), K("v"), &null_tags), LARDER_E_NULL);
    EXPECT(larder_set(c, K("word"), K("abc"), NULL), LARDER_OK);
    EXPECT(larder_incr(c, K("word"), 1, &n), LARDER_E_NOT_A_NUMBER);
    CHECK(strcmp(larder_strerror(LARDER_E_NOT_A_NUMBER),
                 "value is not a decimal unsigned 64-bit number") == 0,
          "strerror");
    CHECK(strcmp(larder_strerror(12345), "unknown larder status code") == 0, "unknown code");

    /* Errors of opening. */
    larder_cache *o = NULL;
    EXPECT(larder_open_observer(path, &o), LARDER_OK);
    EXPECT(larder_get(o, K("k"), buf, sizeof buf, &len), LARDER_E_OBSERVER);
    larder_close(o);
    larder_config fine = larder_config_default(16 << 20);
    EXPECT(larder_create(path, &fine, &o), LARDER_EXISTS);
    larder_config tiny = larder_config_default(1000);
    snprintf(other, sizeof other, "%s/tiny", dir);
    EXPECT(larder_create(other, &tiny, &o), LARDER_E_INVALID_CONFIG);
    CHECK(o == NULL, "no handle after a failure");
    snprintf(other, sizeof other, "%s/absent", dir);
    EXPECT(larder_open(other, &o), LARDER_E_IO);
    EXPECT(larder_open(path, NULL), LARDER_E_NULL);
    snprintf(other, sizeof other, "%s/junk", dir);
    FILE *junk = fopen(other, "w");
    if (!junk) die("creating junk");
    for (int i = 0; i < 8192; i++) fputc('j', junk);
    fclose(junk);
    EXPECT(larder_open(other, &o), LARDER_E_NOT_AN_ARENA);
    snprintf(other, sizeof other, "%s/one-slot", dir);
    larder_cache *one = create_small(other, 1);
    EXPECT(larder_open(other, &o), LARDER_E_TOO_MANY_PROCESSES);
    larder_close(one);
    uint32_t version = 0, v1 = 1;
    peek(other, 8, &version, 4);
    patch(other, 8, &v1, 4);
    EXPECT(larder_open(other, &o), LARDER_E_LAYOUT_VERSION);
    patch(other, 8, &version, 4);
    EXPECT(larder_open(other, &o), LARDER_OK);
    larder_close(o);
    flip(other, 40);
    EXPECT(larder_open(other, &o), LARDER_E_BAD_ARENA);

    larder_close(c);
    larder_close(NULL);
    printf("RESULT statuses=ok\n");
    return failures ? 1 : 0;
}

/* ---- the ABI benchmark's C side (ffi/benches/abi.rs has the Rust side and the keys) --- */

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int mode_bench(const char *arena, long nkeys, long ops) {
    larder_cache *c = open_arena(arena);
    uint8_t *keys = malloc((size_t)nkeys * 12);
    if (!keys) die("malloc");
    for (long i = 0; i < nkeys; i++) {
        char k[24];
        snprintf(k, sizeof k, "k:%010ld", i % 10000000000L);
        memcpy(keys + i * 12, k, 12);
    }
    uint8_t buf[4096];
    size_t len = 0;
    long hits = 0;
    /* Keys the Rust side did not store (a run of this mode alone, under a profiler). */
    memset(buf, 7, 100);
    for (long i = 0; i < nkeys; i++) larder_add(c, keys + i * 12, 12, buf, 100, NULL);
    /* The same key sequence as the Rust side: an LCG's high bits modulo the key count. */
    for (int pass = 0; pass < 2; pass++) {
        uint64_t x = 42;
        double t0 = now_ns();
        for (long i = 0; i < ops; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            const uint8_t *k = keys + (long)((x >> 33) % (uint64_t)nkeys) * 12;
            hits += larder_get(c, k, 12, buf, sizeof buf, &len) == LARDER_OK;
        }
        double dt = now_ns() - t0;
        if (pass == 1)  /* the first pass warms caches and TLB */
            printf("RESULT ns_x100=%ld hits=%ld\n", (long)(dt / (double)ops * 100.0), hits / 2);
    }
    free(keys);
    larder_close(c);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "statuses") == 0) return mode_statuses(argv[2]);
    if (argc >= 4 && strcmp(argv[1], "read") == 0) return mode_read(argv[2], atol(argv[3]));
    if (argc >= 4 && strcmp(argv[1], "write") == 0) return mode_write(argv[2], atol(argv[3]));
    if (argc >= 3 && strcmp(argv[1], "lease") == 0) return mode_lease(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "fork") == 0) return mode_fork(argv[2]);
    if (argc >= 5 && strcmp(argv[1], "bench") == 0)
        return mode_bench(argv[2], atol(argv[3]), atol(argv[4]));
    fprintf(stderr, "usage: abi_test statuses DIR | read ARENA N | write ARENA N | "
                    "lease ARENA | fork ARENA\n");
    return 2;
}
