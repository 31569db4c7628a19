<?php
// php-memcached over the binary protocol with SASL, as its documentation
// sets it up: OPT_BINARY_PROTOCOL, then setSaslAuthData. Needs
// memcached.use_sasl=1 (php -d), which only the command line can set.
//
//   php -d memcached.use_sasl=1 binary_sasl.php HOST PORT USER PASSWORD [MODE]
//
// Prints one JSON object: each step's result and libmemcached's result
// code, for the test to check. MODE `all` (the default) runs every
// command; `refused` only a set and a get, with the result messages, for
// credentials the server must refuse.

[$_, $host, $port, $user, $password] = $argv;
$mode = $argv[5] ?? 'all';

$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
$m->setOption(Memcached::OPT_COMPRESSION, false);
$m->addServer($host, (int) $port);
$m->setSaslAuthData($user, $password);

$out = [];
$step = function (string $name, $result) use (&$out, $m) {
    $out[$name] = [$result, $m->getResultCode()];
};

if ($mode === 'refused') {
    $out['set'] = [$m->set('php:a', 'alpha'), $m->getResultCode(), $m->getResultMessage()];
    $out['get'] = [$m->get('php:a'), $m->getResultCode(), $m->getResultMessage()];
    echo json_encode($out), "\n";
    exit(0);
}

$step('set', $m->set('php:a', 'alpha'));
$step('get', $m->get('php:a'));
$step('get_missing', $m->get('php:missing'));
$step('add_existing', $m->add('php:a', 'x'));
$step('add_new', $m->add('php:b', 'beta', 100));
$step('replace', $m->replace('php:b', 'BETA'));
$step('replace_missing', $m->replace('php:missing', 'x'));
$step('append', $m->append('php:a', '+end'));
$step('prepend', $m->prepend('php:a', 'start+'));
$step('get_appended', $m->get('php:a'));
$step('set_int', $m->set('php:n', 10));
$step('increment', $m->increment('php:n', 5));
$step('decrement', $m->decrement('php:n', 20));
$step('increment_missing_initial', $m->increment('php:counter', 1, 7));
$step('increment_again', $m->increment('php:counter', 1, 7));
$step('set_array', $m->set('php:arr', ['x' => 1, 'y' => [2, 3]]));
$step('get_array', $m->get('php:arr'));
$step('get_multi', $m->getMulti(['php:a', 'php:b', 'php:missing']));
$step('set_multi', $m->setMulti(['php:m1' => 'one', 'php:m2' => 'two']));
$step('get_multi_after', $m->getMulti(['php:m1', 'php:m2']));

$cas = null;
$got = $m->get('php:b', null, Memcached::GET_EXTENDED);
$step('get_extended', is_array($got) ? $got['value'] : $got);
$cas = is_array($got) ? $got['cas'] : 0;
$step('cas_ok', $m->cas($cas, 'php:b', 'cas1'));
$step('cas_stale', $m->cas($cas, 'php:b', 'cas2'));
$step('get_cas', $m->get('php:b'));

$step('touch', $m->touch('php:a', 300));
$step('delete', $m->delete('php:a'));
$step('delete_missing', $m->delete('php:a'));
$step('big', $m->set('php:big', str_repeat('z', 500000)));
$step('big_len', strlen((string) $m->get('php:big')));
$stats = $m->getStats();
$server_stats = is_array($stats) ? (array_values($stats)[0] ?? []) : [];
$step('stats_auth_cmds', (int) ($server_stats['auth_cmds'] ?? -1));
$versions = $m->getVersion();
$step('version', is_array($versions) && is_string(array_values($versions)[0] ?? null));
$step('flush', $m->flush());
$step('get_after_flush', $m->get('php:b'));

echo json_encode($out), "\n";
