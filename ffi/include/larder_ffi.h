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
