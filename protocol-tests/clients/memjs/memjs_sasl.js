// memjs, Node's memcached client, which speaks only the binary protocol,
// with SASL credentials in the server string as its README shows them.
//
//   node memjs_sasl.js HOST:PORT USER PASSWORD [MODE]
//
// Prints one JSON object: each step's result, for the test to check. MODE
// `all` (the default) runs every command; `refused` one get, with the
// error memjs reports, for credentials the server must refuse.
'use strict';

const memjs = require('memjs');

const [server, user, password, mode = 'all'] = process.argv.slice(2);
const quiet = { log() {} };
const client = memjs.Client.create(`${user}:${password}@${server}`, {
  retries: 0,
  timeout: 5,
  conntimeout: 5,
  logger: quiet,
});

const text = (v) => (v === null || v === undefined ? null : v.toString());

async function all() {
  const out = {};
  out.set = await client.set('js:a', 'alpha', {});
  out.get = text((await client.get('js:a')).value);
  out.get_missing = text((await client.get('js:missing')).value);
  out.add_existing = await client.add('js:a', 'x', {});
  out.add_new = await client.add('js:b', 'beta', { expires: 100 });
  out.replace = await client.replace('js:b', 'BETA', {});
  out.replace_missing = await client.replace('js:missing', 'x', {});
  out.append = await client.append('js:a', '+end');
  out.prepend = await client.prepend('js:a', 'start+');
  out.get_appended = text((await client.get('js:a')).value);
  out.increment_missing = (await client.increment('js:n', 5, { initial: 10 })).value;
  out.increment = (await client.increment('js:n', 5, {})).value;
  out.decrement = (await client.decrement('js:n', 100, {})).value;
  out.touch = await client.touch('js:a', 300);
  out.touch_missing = await client.touch('js:missing', 300);
  out.delete = await client.delete('js:a');
  out.delete_missing = await client.delete('js:a');
  out.big = await client.set('js:big', 'z'.repeat(500000), {});
  out.big_len = (await client.get('js:big')).value.length;
  const stats = await new Promise((resolve, reject) => {
    client.stats((err, _server, s) => (err ? reject(err) : resolve(s)));
  });
  out.stats_auth_cmds = Number(stats.auth_cmds);
  out.flush = Object.values(await client.flush()).every((r) => r === true);
  out.get_after_flush = text((await client.get('js:b')).value);
  return out;
}

async function refused() {
  try {
    return { get: text((await client.get('js:a')).value) };
  } catch (e) {
    // memjs fails a request with the string it was given or an Error.
    return { error: e instanceof Error ? e.message : String(e) };
  }
}

(mode === 'refused' ? refused() : all())
  .then((out) => {
    process.stdout.write(JSON.stringify(out) + '\n');
    client.close();
  })
  .catch((e) => {
    process.stderr.write(`${e.stack || e}\n`);
    client.close();
    process.exitCode = 1;
  });
