<?php
// Larder\Cache across an arena larderd replaces (ffi/tests/php.rs plays larderd's part,
// told by each line this prints, and answers "go" on stdin once it has replaced it).
require __DIR__ . '/../autoload.php';

function step(string $say): void
{
    echo "$say\n";
    flush();
    if (trim((string) fgets(STDIN)) !== 'go') {
        fwrite(STDERR, "no go after $say\n");
        exit(1);
    }
}

$c = new Larder\Cache(getenv('ARENA'));
$c->store('k', 'old');
step('replace');
// A write checks every time: it reaches the new arena, and reads follow it there.
$c->store('after', 'written');
echo 'k=', var_export($c->fetch('k'), true), "\n";

// The arena is replaced again while a generator holds the lease on the current one; the
// generator's own write re-opens the handle the lease was taken on.
$v = $c->entry('e', function (string $k) use ($c) {
    step('replace');
    $c->store('inside', 'yes');
    return "made $k";
}, 60);
echo "entry=$v\n";
echo 'e=', var_export($c->fetch('e'), true), "\n";
echo "done\n";
