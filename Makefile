# One entry point for the checks CI runs; see README.md.
.PHONY: test lint unit fuzz-replay protocol-tests run

# Every test: formatting, lints, Rust unit + integration + differential
# tests (the differential ones need Debian's memcached on PATH), the fuzz
# targets' replay, then the real-client suite in protocol-tests/.
test: lint unit fuzz-replay protocol-tests

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

unit:
	cargo test --all-targets

# The fuzz targets' checks over their seeds and pseudo-random mutants, on
# stable Rust (fuzzing itself needs nightly: see fuzz/README.md).
fuzz-replay:
	cargo test --manifest-path fuzz/Cargo.toml --release

protocol-tests:
	protocol-tests/run.sh --target both

run:
	cargo run --release
