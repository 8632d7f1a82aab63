<?php
// Larder\Cache and Larder\SimpleCache against a real arena (ARENA), run by ffi/tests/php.rs
// with Debian's phpunit; the Rust side wrote rust:* before and checks php:* after.

declare(strict_types=1);

require_once __DIR__ . '/../autoload.php';

use Larder\Cache;
use Larder\SimpleCache;
use PHPUnit\Framework\TestCase;

final class CacheTest extends TestCase
{
    private static Cache $c;

    public static function setUpBeforeClass(): void
    {
        self::$c = new Cache(getenv('ARENA'));
    }

    public function testTypesRoundTrip(): void
    {
        $c = self::$c;
        foreach (['s' => 'text', 'i' => -42, 'f' => 1.5, 'a' => ['x' => [1, 2]], 't' => true,
            'z' => null, 'o' => new \ArrayObject([3])] as $k => $v) {
            $this->assertTrue($c->store("t:$k", $v));
            $this->assertEquals($v, $c->fetch("t:$k", $ok), $k);
            $this->assertTrue($ok);
        }
        $this->assertSame(-42, $c->fetch('t:i'));
        $this->assertFalse($c->fetch('absent', $ok));
        $this->assertFalse($ok);
        $big = str_repeat('v', 100000);
        $c->store('big', $big);
        $this->assertSame($big, $c->fetch('big'));
    }

    public function testAddCasDeleteExists(): void
    {
        $c = self::$c;
        $c->delete('k');
        $this->assertTrue($c->add('k', 10));
        $this->assertFalse($c->add('k', 11));
        $this->assertTrue($c->cas('k', 10, 20));
        $this->assertFalse($c->cas('k', 10, 30), 'the value is no longer 10');
        $this->assertSame(20, $c->fetch('k'), 'cas keeps it an integer');
        $this->assertFalse($c->cas('absent', 1, 2));
        $this->assertTrue($c->exists('k'));
        $this->assertTrue($c->delete('k'));
        $this->assertFalse($c->delete('k'));
        $this->assertFalse($c->exists('k'));
    }

    public function testCounters(): void
    {
        $c = self::$c;
        $c->delete('n');
        $this->assertSame(5, $c->inc('n', 5), 'a missing counter starts at 0');
        $this->assertSame(6, $c->inc('n'));
        $this->assertSame(4, $c->dec('n', 2));
        $this->assertSame(0, $c->dec('n', 100), 'counters stop at 0');
        $this->assertSame(3, $c->inc('n', 3, $ok));
        $this->assertTrue($ok);
        $this->assertSame(1, $c->inc('n', -2), 'a negative step decrements');
        $c->store('word', 'abc');
        $this->assertFalse($c->inc('word', 1, $ok));
        $this->assertFalse($ok);
        $this->assertSame(8, $c->inc('rust:n'), 'the counter Rust stored as text');
    }

    public function testTtl(): void
    {
        $c = self::$c;
        $c->store('ttl', 'v', 100);
        $this->assertGreaterThan(98, $c->ttl('ttl'));
        $c->store('forever', 'v');
        $this->assertSame(0, $c->ttl('forever'));
        $this->assertNull($c->ttl('absent'));
        $this->expectException(\InvalidArgumentException::class);
        $c->store('x', 'v', -1);
    }

    public function testEntryRunsTheGeneratorOnce(): void
    {
        $c = self::$c;
        $c->delete('e');
        $runs = 0;
        $gen = function (string $k) use (&$runs) {
            $runs++;
            return ['made' => $k];
        };
        $this->assertSame(['made' => 'e'], $c->entry('e', $gen, 60));
        $this->assertSame(['made' => 'e'], $c->entry('e', $gen, 60));
        $this->assertSame(1, $runs);
        try {
            $c->entry('boom', function () {
                throw new \RuntimeException('db down');
            });
            $this->fail('the exception must come through');
        } catch (\RuntimeException $e) {
            $this->assertSame('db down', $e->getMessage());
        }
        // The lease was given back: the next caller generates at once.
        $this->assertSame('ok', $c->entry('boom', fn() => 'ok'));
    }

    public function testErrors(): void
    {
        $this->expectException(\Larder\Error::class);
        self::$c->store(str_repeat('k', 300), 'v');
    }

    public function testOpenOfAMissingArenaThrows(): void
    {
        $this->expectException(\Larder\Error::class);
        new Cache('/nonexistent/arena');
    }

    public function testSharedWithRust(): void
    {
        $this->assertSame('from rust', self::$c->fetch('rust:str'));
        self::$c->store('php:int', 42);
        self::$c->store('php:str', 'from php');
        self::$c->store('php:arr', [1, 2]);
    }

    public function testInfo(): void
    {
        $i = self::$c->info();
        $this->assertGreaterThan(0, $i['capacity']);
        $this->assertGreaterThan(0, $i['items']);
    }

    public function testPsr16(): void
    {
        $s = new SimpleCache(self::$c);
        $this->assertInstanceOf(\Psr\SimpleCache\CacheInterface::class, $s);
        $this->assertTrue($s->set('p', ['v' => 1]));
        $this->assertSame(['v' => 1], $s->get('p'));
        $this->assertSame('dflt', $s->get('p-absent', 'dflt'));
        $this->assertTrue($s->has('p'));
        $this->assertTrue($s->set('p', 'x', 0), 'a TTL of 0 deletes');
        $this->assertFalse($s->has('p'));
        $this->assertTrue($s->set('q', 'x', new \DateInterval('PT30S')));
        $this->assertGreaterThan(28, self::$c->ttl('q'));
        $this->assertTrue($s->setMultiple(['m1' => 1, 'm2' => 2], 60));
        $this->assertSame(['m1' => 1, 'm2' => 2, 'm3' => null], $s->getMultiple(['m1', 'm2', 'm3']));
        $this->assertTrue($s->deleteMultiple(['m1', 'm2']));
        $this->assertSame(['m1' => 0], $s->getMultiple(['m1'], 0));
        foreach (['', 'a{b', 'a/b', 'a@b', 'a:b', 42] as $bad) {
            try {
                $s->get($bad);
                $this->fail('key ' . var_export($bad, true) . ' must be refused');
            } catch (\Psr\SimpleCache\InvalidArgumentException $e) {
                $this->addToAssertionCount(1);
            }
        }
    }
}
