<?php
// Larder\Cache: the host's larder arena from PHP, through PHP's FFI into liblarder, with
// APCu's vocabulary (fetch, store, add, cas, inc, dec, delete, exists, entry, clear, info).
// Unlike APCu, one arena serves every PHP-FPM pool, CLI script, nginx worker, Python and
// Rust process of the host, survives a killed worker, and is never wiped when fragmented.
//
// Values (docs/bindings.md): strings stored as their bytes (flags 0), integers as decimal
// text (flags 2, so inc/dec and every other language count them), anything else with
// serialize() (flags 1024).

declare(strict_types=1);

namespace Larder;

final class Error extends \RuntimeException
{
}

final class Cache
{
    public const FLAG_INT = 2;
    public const FLAG_SERIALIZED = 1024;

    /** @var array<string, \FFI> one FFI per library path */
    private static array $ffis = [];

    private \FFI $ffi;
    /** @var \FFI\CData larder_cache* */
    private $h;
    private ?string $path;
    private int $reads = 0;
    /** Leases in flight (entry()); while any is, a replaced handle stays open. */
    private int $leases = 0;
    /** @var list<\FFI\CData> handles of replaced arenas a lease in flight still uses */
    private array $replaced = [];
    /** Buffers reused by every call (FFI::new costs more than the read itself). */
    private $retired;
    private $len;
    private $flags;
    private $buf;
    private int $cap = 4096;

    /**
     * @param string|null $path   the arena (null: the default arena path)
     * @param string|null $lib    liblarder.so (null: $LARDER_LIB, else the loader's search)
     * @param string|null $header larder_ffi.h (null: $LARDER_HEADER, else the one installed
     *                            beside the library's prefix, else the repository's)
     */
    public function __construct(?string $path = null, ?string $lib = null, ?string $header = null)
    {
        $lib ??= getenv('LARDER_LIB') ?: 'liblarder.so';
        $this->ffi = self::$ffis[$lib] ??= \FFI::cdef(self::header($header, $lib), $lib);
        $this->path = $path;
        $this->retired = $this->ffi->new('int[1]');
        $this->len = $this->ffi->new('size_t[1]');
        $this->flags = $this->ffi->new('uint32_t[1]');
        $this->buf = $this->ffi->new("uint8_t[{$this->cap}]");
        $this->h = $this->open();
    }

    private static function header(?string $header, string $lib): string
    {
        $candidates = array_filter([
            $header,
            getenv('LARDER_HEADER') ?: null,
            dirname($lib, 2) . '/include/larder_ffi.h',
            __DIR__ . '/../../ffi/include/larder_ffi.h',
        ]);
        foreach ($candidates as $c) {
            if (is_readable($c)) {
                // PHP's FFI passes a PHP string only as a char pointer: the byte inputs
                // (keys, values) are declared so; the ABI is the same.
                return str_replace('const uint8_t *', 'const char *', file_get_contents($c));
            }
        }
        throw new Error('larder_ffi.h not found (tried ' . implode(', ', $candidates) . ')');
    }

    private function open()
    {
        $out = $this->ffi->new('larder_cache*[1]');
        $rc = $this->ffi->larder_open($this->path, $out);
        if ($rc !== 0) {
            throw new Error($this->why($rc), $rc);
        }
        return $out[0];
    }

    public function __destruct()
    {
        if (isset($this->h)) {
            $this->ffi->larder_close($this->h);
        }
        foreach ($this->replaced as $old) {
            $this->ffi->larder_close($old);
        }
    }

    private function why(int $rc): string
    {
        // PHP's FFI hands a returned `const char *` over as a PHP string (or null).
        $s = (string) $this->ffi->larder_last_error();
        return $s !== '' ? $s : (string) $this->ffi->larder_strerror($rc);
    }

    /**
     * The current handle (an arena larderd replaced is re-opened). Reads check every 256th
     * time (a read of a replaced arena sees what it held when it was moved aside, so it may
     * lag by that many reads); writes always (a write into it would be lost to others).
     */
    private function handle(bool $write = false)
    {
        if (!$write && ++$this->reads < 256) {
            return $this->h;
        }
        $this->reads = 0;
        if ($this->ffi->larder_is_retired($this->h, $this->retired) === 0
            && $this->retired[0] !== 0) {
            $old = $this->h;
            $this->h = $this->open();
            if ($this->leases > 0) {
                // entry() holds a lease on the old arena through this handle (its generator
                // may call us): closed when the last lease in flight is settled.
                $this->replaced[] = $old;
            } else {
                $this->ffi->larder_close($old);
            }
        }
        return $this->h;
    }

    private function fail(int $rc): void
    {
        throw new Error($this->why($rc), $rc);
    }

    /** @return array{0: string, 1: int} bytes and flags */
    private static function encode(mixed $v): array
    {
        if (is_string($v)) {
            return [$v, 0];
        }
        if (is_int($v)) {
            return [(string) $v, self::FLAG_INT];
        }
        return [serialize($v), self::FLAG_SERIALIZED];
    }

    private static function decode(string $bytes, int $flags): mixed
    {
        return match ($flags & 0xffff) {
            self::FLAG_INT => (int) $bytes,
            self::FLAG_SERIALIZED => unserialize($bytes),
            default => $bytes,
        };
    }

    private function options(int $ttl, int $flags)
    {
        if ($ttl < 0) {
            throw new \InvalidArgumentException("a TTL cannot be negative: $ttl");
        }
        $o = $this->ffi->new('larder_set_options');
        $o->ttl_ms = $ttl * 1000;
        $o->flags = $flags;
        return $o;
    }

    /** Reads key: [bytes, flags] or null when missing. */
    private function read(string $key): ?array
    {
        while (true) {
            $rc = $this->ffi->larder_get_flags($this->handle(), $key, strlen($key), $this->buf,
                $this->cap, $this->len, $this->flags);
            if ($rc === 0) {
                return [\FFI::string($this->buf, $this->len[0]), $this->flags[0]];
            }
            if ($rc === $this->ffi->LARDER_TOO_SMALL) {
                $this->cap = $this->len[0];
                $this->buf = $this->ffi->new("uint8_t[{$this->cap}]");
                continue;
            }
            if ($rc === $this->ffi->LARDER_NOT_FOUND) {
                return null;
            }
            $this->fail($rc);
        }
    }

    /** apcu_fetch: the value, or false (and $success false) when missing. */
    public function fetch(string $key, ?bool &$success = null): mixed
    {
        $r = $this->read($key);
        $success = $r !== null;
        return $r === null ? false : self::decode($r[0], $r[1]);
    }

    private function write(string $fn, string $key, mixed $var, int $ttl): int
    {
        [$bytes, $flags] = self::encode($var);
        $rc = $this->ffi->$fn($this->handle(true), $key, strlen($key), $bytes, strlen($bytes),
            \FFI::addr($this->options($ttl, $flags)));
        return $rc;
    }

    /** apcu_store: true, or an Error (a value too large, a key too long...). */
    public function store(string $key, mixed $var, int $ttl = 0): bool
    {
        $rc = $this->write('larder_set', $key, $var, $ttl);
        if ($rc !== 0) {
            $this->fail($rc);
        }
        return true;
    }

    /** apcu_add: false when the key is already there. */
    public function add(string $key, mixed $var, int $ttl = 0): bool
    {
        $rc = $this->write('larder_add', $key, $var, $ttl);
        if ($rc === 0) {
            return true;
        }
        if ($rc === $this->ffi->LARDER_NOT_STORED || $rc === $this->ffi->LARDER_EXISTS) {
            return false;
        }
        $this->fail($rc);
    }

    /**
     * apcu_cas: replaces the integer $old with $new, only if the value is still $old.
     * Atomic: larder's gets/cas on the item's CAS token.
     */
    public function cas(string $key, int $old, int $new): bool
    {
        $cap = 32;
        $buf = $this->ffi->new("uint8_t[$cap]");
        $len = $this->ffi->new('size_t');
        $token = $this->ffi->new('uint64_t');
        $rc = $this->ffi->larder_gets($this->handle(), $key, strlen($key), $buf, $cap,
            \FFI::addr($len), \FFI::addr($token));
        if ($rc !== 0 || \FFI::string($buf, $len->cdata) !== (string) $old) {
            return false;
        }
        $v = (string) $new;
        $o = $this->options($this->ttl($key) ?? 0, self::FLAG_INT);
        $rc = $this->ffi->larder_cas_with($this->handle(true), $key, strlen($key), $v, strlen($v),
            \FFI::addr($o), $token->cdata);
        return $rc === 0;
    }

    /** Seconds left (0: never expires), or null when missing. */
    public function ttl(string $key): ?int
    {
        $ms = $this->ffi->new('int64_t');
        $rc = $this->ffi->larder_ttl($this->handle(), $key, strlen($key), \FFI::addr($ms));
        if ($rc === $this->ffi->LARDER_NOT_FOUND) {
            return null;
        }
        if ($rc !== 0) {
            $this->fail($rc);
        }
        return $ms->cdata < 0 ? 0 : intdiv($ms->cdata + 999, 1000);
    }

    private function step(string $fn, string $key, int $step, ?bool &$success, int $ttl): int|false
    {
        if ($step < 0) {
            return $this->step($fn === 'larder_incr' ? 'larder_decr' : 'larder_incr', $key, -$step,
                $success, $ttl);
        }
        $out = $this->ffi->new('uint64_t');
        for ($i = 0; $i < 3; $i++) {
            $rc = $this->ffi->$fn($this->handle(true), $key, strlen($key), $step, \FFI::addr($out));
            if ($rc === 0) {
                $success = true;
                return $out->cdata;
            }
            if ($rc !== $this->ffi->LARDER_NOT_FOUND) {
                $success = false;
                return false;
            }
            // APCu creates a missing counter at 0 before the step (a decrement floors at 0:
            // larder's counters are unsigned, as memcached's).
            $first = $fn === 'larder_incr' ? $step : 0;
            if ($this->add($key, $first, $ttl)) {
                $success = true;
                return $first;
            }
        }
        $success = false;
        return false;
    }

    /** apcu_inc: the new value, or false (not a number). A missing key starts at 0. */
    public function inc(string $key, int $step = 1, ?bool &$success = null, int $ttl = 0): int|false
    {
        return $this->step('larder_incr', $key, $step, $success, $ttl);
    }

    /** apcu_dec: as inc, down; larder's counters stop at 0. */
    public function dec(string $key, int $step = 1, ?bool &$success = null, int $ttl = 0): int|false
    {
        return $this->step('larder_decr', $key, $step, $success, $ttl);
    }

    /** apcu_delete: whether there was a value. */
    public function delete(string $key): bool
    {
        $rc = $this->ffi->larder_delete($this->handle(true), $key, strlen($key));
        if ($rc !== 0 && $rc !== $this->ffi->LARDER_NOT_FOUND) {
            $this->fail($rc);
        }
        return $rc === 0;
    }

    /** apcu_exists. */
    public function exists(string $key): bool
    {
        return $this->ttl($key) !== null;
    }

    /**
     * apcu_entry, stampede-safe across every process of the host: on a miss one caller
     * (holding the key's arena lease) runs $generator($key) and stores its result for
     * $ttl; the others wait for that value instead of running it too.
     */
    public function entry(string $key, callable $generator, int $ttl = 0): mixed
    {
        $cap = 4096;
        $len = $this->ffi->new('size_t');
        $lease = $this->ffi->new('larder_lease');
        for (;;) {
            // One handle for the lease's whole life (taken and given back on one arena).
            $h = $this->handle(true);
            $buf = $this->ffi->new("uint8_t[$cap]");
            $rc = $this->ffi->larder_get_or_lease($h, $key, strlen($key), 0, 0.0,
                $buf, $cap, \FFI::addr($len), \FFI::addr($lease));
            if ($rc === $this->ffi->LARDER_TOO_SMALL) {
                $cap = $len->cdata;
                continue;
            }
            if ($rc === 0 || $rc === $this->ffi->LARDER_STALE) {
                // The lease API reads bytes without flags: read the item with them.
                $r = $this->read($key);
                if ($r !== null) {
                    return self::decode($r[0], $r[1]);
                }
                continue;
            }
            if ($rc === $this->ffi->LARDER_WAIT) {
                usleep(max(1, min(50, (int) $lease->retry_after_ms)) * 1000);
                continue;
            }
            if ($rc !== $this->ffi->LARDER_LEASED) {
                $this->fail($rc);
            }
            return $this->generate($h, $key, $lease, $generator, $ttl);
        }
    }

    /** entry() holding the lease on $h: runs the generator, stores, gives the lease back. */
    private function generate($h, string $key, $lease, callable $generator, int $ttl): mixed
    {
        $this->leases++;
        try {
            try {
                $value = $generator($key);
            } catch (\Throwable $e) {
                $this->ffi->larder_release_lease($h, $key, strlen($key), \FFI::addr($lease));
                throw $e;
            }
            [$bytes, $flags] = self::encode($value);
            $opts = \FFI::addr($this->options($ttl, $flags));
            if ($h !== $this->handle(true)) {
                // larderd replaced the arena while the generator ran: the value belongs in
                // the new one; the lease on the old one is given back.
                $this->ffi->larder_release_lease($h, $key, strlen($key), \FFI::addr($lease));
                $rc = $this->ffi->larder_set($this->h, $key, strlen($key), $bytes,
                    strlen($bytes), $opts);
            } else {
                $rc = $this->ffi->larder_fill_lease($h, $key, strlen($key),
                    \FFI::addr($lease), $bytes, strlen($bytes), $opts);
            }
            if ($rc !== 0 && $rc !== $this->ffi->LARDER_NOT_STORED) {
                $this->fail($rc);
            }
            return $value;
        } finally {
            if (--$this->leases === 0) {
                foreach ($this->replaced as $old) {
                    $this->ffi->larder_close($old);
                }
                $this->replaced = [];
            }
        }
    }

    /** apcu_clear_cache: empties the arena (for every process of the host). */
    public function clear(): bool
    {
        $n = $this->ffi->new('uint64_t');
        $rc = $this->ffi->larder_flush($this->handle(true), \FFI::addr($n));
        if ($rc !== 0) {
            $this->fail($rc);
        }
        return true;
    }

    /** apcu_cache_info's counters, as larder counts them. */
    public function info(): array
    {
        $s = $this->ffi->new('larder_stats');
        $rc = $this->ffi->larder_get_stats($this->handle(), \FFI::addr($s));
        if ($rc !== 0) {
            $this->fail($rc);
        }
        $out = [];
        foreach (['hits', 'misses', 'sets', 'deletes', 'evictions', 'expired', 'items',
            'bytes_used', 'capacity', 'arena_size', 'segments', 'processes'] as $f) {
            $out[$f] = $s->$f;
        }
        return $out;
    }
}
