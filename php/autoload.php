<?php
// require 'php/autoload.php': Larder\Cache and Larder\SimpleCache (the latter needs
// psr/simple-cache: Debian's php-psr-simple-cache, loaded from /usr/share/php when present).
spl_autoload_register(function (string $class): void {
    if (str_starts_with($class, 'Psr\\SimpleCache\\')
        && is_readable('/usr/share/php/Psr/SimpleCache/autoload.php')) {
        require_once '/usr/share/php/Psr/SimpleCache/autoload.php';
        return;
    }
    $map = [
        'Larder\\Cache' => 'Cache.php',
        'Larder\\Error' => 'Cache.php',
        'Larder\\SimpleCache' => 'SimpleCache.php',
        'Larder\\InvalidKey' => 'SimpleCache.php',
    ];
    if (isset($map[$class])) {
        require_once __DIR__ . '/src/' . $map[$class];
    }
});
