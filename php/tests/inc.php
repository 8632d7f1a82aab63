<?php
// One of several processes incrementing one counter (ffi/tests/php.rs): php inc.php N
require __DIR__ . '/../autoload.php';
$c = new Larder\Cache(getenv('ARENA'));
for ($i = 0; $i < (int) $argv[1]; $i++) {
    if ($c->inc('php:count') === false) {
        fwrite(STDERR, "inc failed\n");
        exit(1);
    }
}
echo "done\n";
