<?php
// PHP processes (bench/bindings.sh): Larder\Cache::fetch of a 100 B value against
// apcu_fetch (php8.2-apcu, apc.enable_cli=1), interleaved rounds, and the same for a 90/10
// fetch/store mix. With PROCS > 1 the round runs in PROCS children forked (pcntl_fork)
// after APCu's and the arena's keys are stored, so all share one APCu as an FPM pool does,
// and the time is the wall time of all of them: ns per op is wall / (PROCS x OPS).
// Prints "<name> <median ns per op> <min> <max>".
//   php -d apc.enable_cli=1 php_bench.php ROUNDS OPS [PROCS]
require __DIR__ . '/../../php/autoload.php';

$KEYS = 10000;
$ROUNDS = (int) ($argv[1] ?? 7);
$OPS = (int) ($argv[2] ?? 200000);
$PROCS = (int) ($argv[3] ?? 1);
$value = str_repeat('v', 100);
$c = new Larder\Cache(getenv('ARENA'));
if (!function_exists('apcu_fetch') || !apcu_enabled()) {
    fwrite(STDERR, "APCu is not enabled (php8.2-apcu, -d apc.enable_cli=1)\n");
    exit(1);
}
$keys = [];
for ($i = 1; $i <= $KEYS; $i++) {
    $keys[] = "key:$i";
    $c->store("key:$i", $value);
    apcu_store("key:$i", $value);
}
$systems = [
    'larder fetch' => fn($k, $w) => $c->fetch($k),
    'apcu_fetch' => fn($k, $w) => apcu_fetch($k),
    'larder 90/10' => fn($k, $w) => $w ? $c->store($k, $GLOBALS['value']) : $c->fetch($k),
    'apcu 90/10' => fn($k, $w) => $w ? apcu_store($k, $GLOBALS['value']) : apcu_fetch($k),
];
$res = array_fill_keys(array_keys($systems), []);
for ($r = 0; $r < $ROUNDS; $r++) {
    foreach ($systems as $name => $op) {
        $run = function (int $seed) use ($op, $keys, $KEYS, $OPS) {
            $x = $seed;
            for ($i = 0; $i < $OPS; $i++) {
                $x = ($x * 1103515245 + 12345) % 2147483648;
                $op($keys[$x % $KEYS], $i % 10 === 9);
            }
        };
        $t0 = hrtime(true);
        if ($PROCS === 1) {
            $run(12345);
        } else {
            $kids = [];
            for ($p = 0; $p < $PROCS; $p++) {
                $pid = pcntl_fork();
                if ($pid === 0) {
                    $run(12345 + $p);
                    exit(0);
                }
                $kids[] = $pid;
            }
            foreach ($kids as $pid) {
                pcntl_waitpid($pid, $status);
                if (!pcntl_wifexited($status) || pcntl_wexitstatus($status) !== 0) {
                    fwrite(STDERR, "a child failed\n");
                    exit(1);
                }
            }
        }
        $res[$name][] = (hrtime(true) - $t0) / ($OPS * $PROCS);
    }
}
foreach ($res as $name => $r) {
    sort($r);
    printf("%s %.1f %.1f %.1f\n", $name, $r[intdiv(count($r), 2)], $r[0], $r[count($r) - 1]);
}
