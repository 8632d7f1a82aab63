<?php
// Served by a php-fpm pool behind nginx in ffi/tests/php.rs: ?op=inc counts, ?op=get&k=K
// reads; each answer starts with the serving worker's pid.
require __DIR__ . '/../autoload.php';
$c = new Larder\Cache(getenv('ARENA'));
switch ($_GET['op'] ?? '') {
    case 'inc':
        echo getmypid(), ' ', $c->inc('fpm:count');
        break;
    case 'get':
        echo getmypid(), ' ', var_export($c->fetch((string) ($_GET['k'] ?? '')), true);
        break;
    default:
        http_response_code(400);
}
