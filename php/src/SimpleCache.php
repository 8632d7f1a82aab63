<?php
// Larder\SimpleCache: PSR-16 (psr/simple-cache 1.0, Debian's php-psr-simple-cache) over
// Larder\Cache. Keys follow PSR-16: a non-empty string without {}()/\@: (larder takes any
// bytes, but PSR-16 code expects the refusal); TTLs are null (no expiry), seconds, or a
// DateInterval; a TTL of zero or less deletes.

declare(strict_types=1);

namespace Larder;

use Psr\SimpleCache\CacheInterface;

final class InvalidKey extends \InvalidArgumentException implements \Psr\SimpleCache\InvalidArgumentException
{
}

final class SimpleCache implements CacheInterface
{
    private Cache $c;

    public function __construct(?Cache $cache = null)
    {
        $this->c = $cache ?? new Cache();
    }

    private static function key(mixed $key): string
    {
        if (!is_string($key) || $key === '' || strpbrk($key, '{}()/\\@:') !== false) {
            throw new InvalidKey('a PSR-16 key is a non-empty string without {}()/\\@: — got '
                . var_export($key, true));
        }
        return $key;
    }

    /** Seconds, or null for none; false when the TTL means "already expired". */
    private static function ttl(mixed $ttl): int|false|null
    {
        if ($ttl === null) {
            return null;
        }
        if ($ttl instanceof \DateInterval) {
            $now = new \DateTimeImmutable();
            $ttl = $now->add($ttl)->getTimestamp() - $now->getTimestamp();
        }
        if (!is_int($ttl)) {
            throw new InvalidKey('a TTL is null, an int or a DateInterval');
        }
        return $ttl > 0 ? $ttl : false;
    }

    private static function keys(mixed $keys): array
    {
        if (!is_iterable($keys)) {
            throw new InvalidKey('keys must be iterable');
        }
        $out = [];
        foreach ($keys as $k) {
            $out[] = self::key($k);
        }
        return $out;
    }

    public function get($key, $default = null)
    {
        $v = $this->c->fetch(self::key($key), $ok);
        return $ok ? $v : $default;
    }

    public function set($key, $value, $ttl = null)
    {
        $key = self::key($key);
        $t = self::ttl($ttl);
        if ($t === false) {
            $this->c->delete($key);
            return true;
        }
        return $this->c->store($key, $value, $t ?? 0);
    }

    public function delete($key)
    {
        $this->c->delete(self::key($key));
        return true;
    }

    public function clear()
    {
        return $this->c->clear();
    }

    public function getMultiple($keys, $default = null)
    {
        $out = [];
        foreach (self::keys($keys) as $k) {
            $out[$k] = $this->get($k, $default);
        }
        return $out;
    }

    public function setMultiple($values, $ttl = null)
    {
        if (!is_iterable($values)) {
            throw new InvalidKey('values must be iterable');
        }
        $ok = true;
        foreach ($values as $k => $v) {
            $ok = $this->set(is_int($k) ? (string) $k : $k, $v, $ttl) && $ok;
        }
        return $ok;
    }

    public function deleteMultiple($keys)
    {
        foreach (self::keys($keys) as $k) {
            $this->c->delete($k);
        }
        return true;
    }

    public function has($key)
    {
        return $this->c->exists(self::key($key));
    }
}
