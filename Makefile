# One entry point for the checks CI runs; see README.md.
.PHONY: test lint unit protocol-tests run

# Every test: formatting, lints, Rust unit + integration + differential
# tests (the differential ones need Debian's memcached on PATH), then the
# real-client suite in protocol-tests/.
test: lint unit protocol-tests

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

unit:
	cargo test --all-targets

protocol-tests:
	protocol-tests/run.sh --target both

run:
	cargo run --release
