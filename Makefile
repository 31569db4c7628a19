# One entry point for the checks CI runs; see README.md.
.PHONY: test lint unit fuzz-replay protocol-tests smoke run

# Every test: formatting, lints, Rust unit + integration + differential
# tests (the differential ones need Debian's memcached on PATH), the fuzz
# targets' replay, the real-client suite in protocol-tests/, then the
# README's run command, the Docker entry point and the systemd ExecStart
# started as written (they use the default ports 11211 and 9150).
test: lint unit fuzz-replay protocol-tests smoke

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

smoke:
	python3 scripts/smoke.py

run:
	cargo run --release
