//! Microbenchmarks of request framing and parsing: `Decoder::decode` on
//! classic and meta commands, small and large, and on a pipelined batch.
//!
//! `cargo bench --bench parser`; see benches/README.md.

mod common;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrocache::item_rules::Limits;
use ferrocache::protocol::codec::{Decode, Decoder};
use ferrocache::protocol::{Frame, Request};

/// A storage request with a data block of `len` bytes.
fn with_block(line: &str, len: usize) -> Vec<u8> {
    let mut input = line.as_bytes().to_vec();
    input.extend((0..len).map(|i| b'a' + (i % 26) as u8));
    input.extend_from_slice(b"\r\n");
    input
}

/// What a command is expected to decode to, so that a typo in an input
/// fails the run instead of timing an error reply.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Get,
    Store,
    Delete,
    Meta,
    MetaNoop,
}

impl Kind {
    fn matches(self, command: &Request<'_>) -> bool {
        matches!(
            (self, command),
            (Kind::Get, Request::Get { .. })
                | (Kind::Store, Request::Store { .. })
                | (Kind::Delete, Request::Delete { .. })
                | (Kind::Meta, Request::Meta(_))
                | (Kind::MetaNoop, Request::MetaNoop)
        )
    }
}

/// Decodes `input` with a fresh decoder and checks that it holds exactly
/// the commands `kinds`, consuming every byte.
fn check(name: &str, input: &[u8], kinds: &[Kind]) {
    let mut decoder = Decoder::new(Limits::default());
    let mut rest = input;
    for (n, kind) in kinds.iter().enumerate() {
        match decoder.decode(rest) {
            Decode::Frame {
                consumed,
                frame: Some(Frame::Request(command)),
            } if kind.matches(&command) => rest = &rest[consumed..],
            other => panic!("{name}: command {n} should be {kind:?}, decoded {other:?}"),
        }
    }
    assert!(rest.is_empty(), "{name}: {} bytes left over", rest.len());
    assert_eq!(decoder.decode(rest), Decode::NeedMore, "{name}");
}

/// One request per iteration. The decoder is reused, as a connection
/// reuses it: after a complete frame it is back at the start of a line.
fn bench_one(c: &mut Criterion, name: &str, input: &[u8], kind: Kind) {
    check(name, input, &[kind]);
    let mut decoder = Decoder::new(Limits::default());
    let mut group = c.benchmark_group("parser");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.bench_function(name, |b| {
        b.iter(|| match decoder.decode(black_box(input)) {
            Decode::Frame { consumed, frame } => {
                black_box(frame);
                consumed
            }
            Decode::NeedMore => 0,
        })
    });
    group.finish();
}

/// The pipelined batch: 100 commands a client sent in one write, mixed as
/// a pipelining client mixes them (quiet meta commands fenced by `mn`).
fn pipeline() -> (Vec<u8>, Vec<Kind>) {
    let mut input = Vec::new();
    let mut kinds = Vec::new();
    for i in 0..10 {
        let batch: [(Vec<u8>, Kind); 10] = [
            (format!("get key:{i}\r\n").into_bytes(), Kind::Get),
            (
                format!("get key:{i}0 key:{i}1 key:{i}2 key:{i}3\r\n").into_bytes(),
                Kind::Get,
            ),
            (
                with_block(&format!("set key:{i} 0 0 100\r\n"), 100),
                Kind::Store,
            ),
            (format!("mg key:{i} v f t q\r\n").into_bytes(), Kind::Meta),
            (format!("mg key:{i}1 s v q\r\n").into_bytes(), Kind::Meta),
            (
                with_block(&format!("ms key:{i} 100 T0 F5 q\r\n"), 100),
                Kind::Meta,
            ),
            (format!("md key:{i}2 q\r\n").into_bytes(), Kind::Meta),
            (format!("delete key:{i}3\r\n").into_bytes(), Kind::Delete),
            (format!("ma cnt:{i} q\r\n").into_bytes(), Kind::Meta),
            (b"mn\r\n".to_vec(), Kind::MetaNoop),
        ];
        for (bytes, kind) in batch {
            input.extend(bytes);
            kinds.push(kind);
        }
    }
    (input, kinds)
}

fn bench_pipeline(c: &mut Criterion) {
    let (input, kinds) = pipeline();
    check("pipeline_100", &input, &kinds);
    let mut decoder = Decoder::new(Limits::default());
    let mut group = c.benchmark_group("parser");
    group.throughput(Throughput::Elements(kinds.len() as u64));
    group.bench_function("pipeline_100", |b| {
        b.iter(|| {
            let mut rest = black_box(&input[..]);
            let mut frames = 0u32;
            while let Decode::Frame { consumed, frame } = decoder.decode(rest) {
                black_box(frame);
                rest = &rest[consumed..];
                frames += 1;
            }
            frames
        })
    });
    group.finish();
}

fn parser(c: &mut Criterion) {
    bench_one(c, "classic_get", b"get key:12345\r\n", Kind::Get);
    let keys: Vec<String> = (0..100).map(|i| format!("key:{i}")).collect();
    let multi_get = format!("get {}\r\n", keys.join(" "));
    bench_one(c, "classic_get_100_keys", multi_get.as_bytes(), Kind::Get);
    let set_small = with_block("set key:12345 0 0 100\r\n", 100);
    bench_one(c, "classic_set_100B", &set_small, Kind::Store);
    let set_large = with_block("set key:12345 0 0 65536\r\n", 65536);
    bench_one(c, "classic_set_64KiB", &set_large, Kind::Store);
    bench_one(c, "meta_mg", b"mg key:1 v f t\r\n", Kind::Meta);
    let ms = with_block("ms key:1 100 T0 F5\r\n", 100);
    bench_one(c, "meta_ms_100B", &ms, Kind::Meta);
    bench_pipeline(c);
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = parser
}
criterion_main!(benches);
