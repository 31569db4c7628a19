//! Fuzz targets for ferrocache, as plain functions so that they run both
//! under libFuzzer (`cargo fuzz run decoder`, `cargo fuzz run connection`)
//! and as deterministic tests over the seed corpus plus pseudo-random
//! mutations of it (`cargo test --manifest-path fuzz/Cargo.toml`).
//!
//! - [`decoder::check`]: the text request decoder on arbitrary bytes.
//! - [`binary_decoder::check`]: the binary request decoder on arbitrary bytes.
//! - [`connection::check`]: decoder, `execute` and a real store together,
//!   text and binary (a stream starting with 0x80 is binary).

pub mod binary_decoder;
pub mod connection;
pub mod decoder;

pub use ferrocache::test_rng::Rng;

/// Pieces of the text protocol that mutations splice in.
pub const DICTIONARY: &[&[u8]] = &[
    b"set ",
    b"add ",
    b"replace ",
    b"append ",
    b"prepend ",
    b"cas ",
    b"get ",
    b"gets ",
    b"gat ",
    b"gats ",
    b"bget ",
    b"delete ",
    b"incr ",
    b"decr ",
    b"touch ",
    b"flush_all",
    b"version",
    b"verbosity ",
    b"quit",
    b"shutdown",
    b"stats",
    b"cache_memlimit ",
    b"mn",
    b"noreply",
    b" ",
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b"\t",
    b"0",
    b"1",
    b"-1",
    b"+5",
    b"2592001",
    b"4294967296",
    b"18446744073709551615",
    b"2147483647",
    b"k",
    b"key",
    b"HTTP/1.1",
    b"\x80",
    // Binary: request magics with common opcodes, lengths, quiet forms.
    b"\x80\x00",
    b"\x80\x01",
    b"\x80\x05",
    b"\x80\x0a",
    b"\x80\x10",
    b"\x80\x11",
    b"\x80\x0d",
    b"\x80\x1d",
    b"\x80\x21",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff",
    b"\x00\x01",
    b"\x08",
    b"\x14",
];

/// Applies a few random edits: byte flips, inserted dictionary words,
/// deleted or duplicated ranges.
pub fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = if v.is_empty() {
            0
        } else {
            rng.below(v.len() as u64 + 1) as usize
        };
        match rng.below(5) {
            0 if at < v.len() => v[at] = rng.next_u64() as u8,
            1 => {
                let w = DICTIONARY[rng.below(DICTIONARY.len() as u64) as usize];
                v.splice(at..at, w.iter().copied());
            }
            2 if at < v.len() => {
                let n = (1 + rng.below(16) as usize).min(v.len() - at);
                v.drain(at..at + n);
            }
            3 if at < v.len() => {
                let n = (1 + rng.below(64) as usize).min(v.len() - at);
                let piece = v[at..at + n].to_vec();
                v.splice(at..at, piece);
            }
            _ => {
                let n = rng.below(8);
                for _ in 0..n {
                    v.insert(at.min(v.len()), rng.next_u64() as u8);
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("seeds")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        files.sort();
        let seeds: Vec<Vec<u8>> = files
            .iter()
            .map(|p| std::fs::read(p).expect("seed"))
            .collect();
        assert!(!seeds.is_empty());
        seeds
    }

    /// Every seed, then mutants of random seeds, for a bounded count.
    fn replay(target: &str, rounds: usize, check: fn(&[u8])) {
        let seeds = seeds(target);
        for s in &seeds {
            check(s);
        }
        let mut rng = Rng::new(0x00c0_ffee_d00d);
        for _ in 0..rounds {
            let base = &seeds[rng.below(seeds.len() as u64) as usize];
            let input = mutate(base, &mut rng);
            check(&input);
        }
    }

    #[test]
    fn decoder_seeds_and_mutants() {
        replay("decoder", 20_000, decoder::check);
    }

    #[test]
    fn binary_decoder_seeds_and_mutants() {
        replay("binary_decoder", 20_000, binary_decoder::check);
    }

    /// The SASL seeds start with a valid auth, so what follows it runs as
    /// on a connection without SASL: as many requests are executed.
    #[test]
    fn connection_sasl_seeds_authenticate_and_serve() {
        let auth = connection::sasl_auth();
        let sasl: Vec<Vec<u8>> = seeds("connection")
            .into_iter()
            .filter(|s| s.len() > 3 && s[0] & 0x80 != 0 && s[3..].starts_with(&auth))
            // One with SASL requests of its own after the auth, which a
            // connection without SASL answers as unknown.
            .filter(|s| s[3 + auth.len()..].first() != Some(&0x80) || s[3 + auth.len() + 1] != 0x20)
            .collect();
        assert!(sasl.len() >= 10, "{} SASL seeds", sasl.len());
        let mut total = 0;
        for s in &sasl {
            let plain = [&[s[0] & 0x7f, s[1], s[2]][..], &s[3 + auth.len()..]].concat();
            let served = connection::served(s);
            assert_eq!(served, connection::served(&plain), "seed {s:x?}");
            total += served;
        }
        assert!(total >= 40, "only {total} requests served");
    }

    #[test]
    fn connection_seeds_and_mutants() {
        replay("connection", 5_000, connection::check);
    }
}
