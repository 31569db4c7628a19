# One entry point for the checks CI runs; see README.md.
.PHONY: test lint deploy-check unit fuzz-replay protocol-tests smoke package run

# Every test: formatting, lints, Rust unit + integration + differential
# tests (the differential ones need Debian's memcached on PATH), the fuzz
# targets' replay, the real-client suite in protocol-tests/, then the
# README's run command, the Docker entry point and the systemd ExecStart
# started as written (they use the default ports 11211 and 9150), and last
# the Debian package built, installed, started and removed (as root).
test: lint deploy-check unit fuzz-replay protocol-tests smoke package

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

# The Prometheus rules and their unit tests (promtool, from Debian's
# prometheus package), and the Grafana dashboard's JSON.
deploy-check:
	promtool check rules deploy/prometheus/alerts.yml
	cd deploy/prometheus && promtool test rules alerts_test.yml
	python3 -m json.tool deploy/grafana/ferrocache.json >/dev/null

# Every test with connections driven by io_uring, then the TCP integration
# tests (not the unit tests, which start no server) again with tokio's
# epoll driver. FERROCACHE_IO_DRIVER is ferrocache's --io-driver; an
# explicit io-uring stops the start where io_uring is unavailable, so this
# run fails rather than silently testing one driver twice.
unit:
	FERROCACHE_IO_DRIVER=io-uring cargo test --all-targets
	FERROCACHE_IO_DRIVER=tokio cargo test --test integration --test abuse --test metrics --test differential --test daemon --test memory --test watch --test restart

# The fuzz targets' checks over their seeds and pseudo-random mutants, on
# stable Rust (fuzzing itself needs nightly: see fuzz/README.md).
fuzz-replay:
	cargo test --manifest-path fuzz/Cargo.toml --release

protocol-tests:
	protocol-tests/run.sh --target both

smoke:
	python3 scripts/smoke.py

package:
	scripts/deb.sh

run:
	cargo run --release
