# Dalli 3 (Debian's ruby-dalli), which speaks the binary protocol, with
# SASL credentials.
#
#   ruby dalli_sasl.rb HOST:PORT USER PASSWORD [MODE]
#
# Prints one JSON object: each step's result, for the test to check. MODE
# `all` (the default) runs every command; `refused` one get, with the
# error Dalli raises, for credentials the server must refuse.

require 'dalli'
require 'json'
require 'logger'

server, user, password, mode = ARGV
mode ||= 'all'
Dalli.logger = Logger.new(nil)

dc = Dalli::Client.new(server, username: user, password: password,
                               socket_timeout: 5, socket_max_failures: 1)
out = {}

if mode == 'refused'
  begin
    out['get'] = dc.get('rb:a')
  rescue StandardError => e
    out['error'] = e.class.name
    out['message'] = e.message
  end
  puts JSON.generate(out)
  exit 0
end

out['set'] = dc.set('rb:a', 'alpha', 0, raw: true).is_a?(Integer)
out['get'] = dc.get('rb:a')
out['get_missing'] = dc.get('rb:missing')
out['add_existing'] = dc.add('rb:a', 'x', 0, raw: true)
out['add_new'] = dc.add('rb:b', 'beta', 100, raw: true).is_a?(Integer)
out['replace'] = dc.replace('rb:b', 'BETA', 0, raw: true).is_a?(Integer)
out['replace_missing'] = dc.replace('rb:missing', 'x', 0, raw: true)
out['append'] = dc.append('rb:a', '+end')
out['prepend'] = dc.prepend('rb:a', 'start+')
out['get_appended'] = dc.get('rb:a')
out['marshalled'] = dc.set('rb:obj', { 'x' => [1, 2] }).is_a?(Integer)
out['get_marshalled'] = dc.get('rb:obj')
out['incr_missing_initial'] = dc.incr('rb:n', 1, nil, 10)
out['incr'] = dc.incr('rb:n', 5)
out['decr'] = dc.decr('rb:n', 100)
out['incr_missing_no_initial'] = dc.incr('rb:none', 1)
out['get_multi'] = dc.get_multi('rb:a', 'rb:b', 'rb:missing')
out['cas'] = dc.cas('rb:b', 0, raw: true) { |v| v + '!' }.is_a?(Integer)
out['get_cas'] = dc.get('rb:b')
value, cas = dc.get_cas('rb:b')
out['set_cas_ok'] = dc.set_cas('rb:b', 'new', cas, 0, raw: true).is_a?(Integer)
out['set_cas_stale'] = dc.set_cas('rb:b', 'newer', cas, 0, raw: true)
out['get_after_cas'] = [value, dc.get('rb:b')]
out['touch'] = dc.touch('rb:a', 300)
out['touch_missing'] = dc.touch('rb:missing', 300)
out['gat'] = dc.gat('rb:a', 300)
out['fetch'] = dc.fetch('rb:f') { 'computed' }
out['fetch_again'] = dc.fetch('rb:f') { 'recomputed' }
out['delete'] = dc.delete('rb:a')
out['delete_missing'] = dc.delete('rb:a')
out['big'] = dc.set('rb:big', 'z' * 500_000, 0, raw: true).is_a?(Integer)
out['big_len'] = dc.get('rb:big').bytesize
out['stats_auth_cmds'] = dc.stats.values.first['auth_cmds'].to_i
out['version'] = dc.version.values.first.is_a?(String)
out['flush'] = dc.flush.all? { |r| r }
out['get_after_flush'] = dc.get('rb:b')
dc.close

puts JSON.generate(out)
