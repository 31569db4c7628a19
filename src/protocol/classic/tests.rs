//! The classic commands' table tests. Each input goes through the decoder,
//! so a case also checks what the line (and data block) consumed.

use crate::item_rules::StoreMode;
use crate::protocol::test_support::*;
use crate::protocol::tokens::Tokens;
use crate::protocol::{Frame, Keys, ProtocolError, Request, ShutdownMode};

/// Line-only requests: the frame, consuming the whole input.
#[test]
fn line_commands() {
    let k251 = "k".repeat(251);
    let k250 = "k".repeat(250);
    let cases: Vec<(String, Frame<'static>)> = vec![
        // line shape (the codec cuts line ends and NULs: see its tests)
        ("   \r\n".into(), unknown()),
        // Shorter than a two-byte command and CRLF.
        ("x\r\n".into(), bad_format()),
        ("xy\r\n".into(), unknown()),
        // A leading space names no command.
        ("   version   \r\n".into(), unknown()),
        ("version   \r\n".into(), cmd(Request::Version)),
        (
            " flush_all\r\n".into(),
            cmd(Request::FlushAll {
                delay: 0,
                noreply: false,
            }),
        ),
        (
            "foo noreply\r\n".into(),
            err_quiet(ProtocolError::UnknownCommand),
        ),
        ("VERSION\r\n".into(), unknown()),
        ("STATS\r\n".into(), unknown()),
        ("version x y\r\n".into(), cmd(Request::Version)),
        ("quit\r\n".into(), cmd(Request::Quit)),
        ("quit now please\r\n".into(), cmd(Request::Quit)),
        // get
        ("get\r\n".into(), bad_format()),
        ("get \r\n".into(), bad_format()),
        ("gets\r\n".into(), bad_format()),
        ("bget\r\n".into(), unknown()),
        ("gat\r\n".into(), bad_format()),
        ("gats\r\n".into(), bad_format()),
        ("gx a\r\n".into(), unknown()),
        ("gat 10\r\n".into(), bad_format()),
        // the exptime is plain digits within 32 bits
        ("gats +5 a\r\n".into(), err(ProtocolError::InvalidExptime)),
        (
            "gat 4294967297 a\r\n".into(),
            err(ProtocolError::InvalidExptime),
        ),
        ("GET a\r\n".into(), unknown()),
        (format!("get {k251}\r\n"), get_key_too_long()),
        (format!("get a {k251} b\r\n"), get_key_too_long()),
        (format!("gets a {k251}\r\n"), get_key_too_long()),
        ("gat x a\r\n".into(), err(ProtocolError::InvalidExptime)),
        (
            format!("gat x {k251}\r\n"),
            err(ProtocolError::InvalidExptime),
        ),
        (format!("gat 10 {k251}\r\n"), get_key_too_long()),
        ("gats 1.5 a\r\n".into(), err(ProtocolError::InvalidExptime)),
        // delete
        (
            "delete k\r\n".into(),
            cmd(Request::Delete {
                key: b"k",
                noreply: false,
            }),
        ),
        (
            "delete k 0\r\n".into(),
            cmd(Request::Delete {
                key: b"k",
                noreply: false,
            }),
        ),
        (
            "delete k noreply\r\n".into(),
            cmd(Request::Delete {
                key: b"k",
                noreply: true,
            }),
        ),
        (
            "delete k 0 noreply\r\n".into(),
            cmd(Request::Delete {
                key: b"k",
                noreply: true,
            }),
        ),
        (
            "delete noreply\r\n".into(),
            cmd(Request::Delete {
                key: b"noreply",
                noreply: true,
            }),
        ),
        // 1.6.45 ignores what follows the key (no more hold time).
        (
            "delete k 10\r\n".into(),
            cmd(Request::Delete {
                key: b"k",
                noreply: false,
            }),
        ),
        (
            "delete k x\r\n".into(),
            cmd(Request::Delete {
                key: b"k",
                noreply: false,
            }),
        ),
        (
            "delete k 0 0\r\n".into(),
            cmd(Request::Delete {
                key: b"k",
                noreply: false,
            }),
        ),
        (
            "delete k 10 noreply\r\n".into(),
            cmd(Request::Delete {
                key: b"k",
                noreply: true,
            }),
        ),
        (
            "delete k noreply noreply\r\n".into(),
            cmd(Request::Delete {
                key: b"k",
                noreply: true,
            }),
        ),
        ("delete\r\n".into(), bad_format()),
        (
            "delete k 0 noreply x\r\n".into(),
            cmd(Request::Delete {
                key: b"k",
                noreply: false,
            }),
        ),
        (format!("delete {k251}\r\n"), bad_format()),
        (format!("delete {k251} 0\r\n"), bad_format()),
        (
            format!("delete {k251} noreply\r\n"),
            err_quiet(ProtocolError::BadCommandLineFormat),
        ),
        // incr / decr
        (
            "incr k 5\r\n".into(),
            cmd(Request::Arith {
                key: b"k",
                delta: 5,
                incr: true,
                noreply: false,
            }),
        ),
        (
            "decr k 5 noreply\r\n".into(),
            cmd(Request::Arith {
                key: b"k",
                delta: 5,
                incr: false,
                noreply: true,
            }),
        ),
        ("incr k +5\r\n".into(), err(ProtocolError::InvalidDelta)),
        (
            "incr k 18446744073709551615\r\n".into(),
            cmd(Request::Arith {
                key: b"k",
                delta: u64::MAX,
                incr: true,
                noreply: false,
            }),
        ),
        (
            "incr k 5 foo\r\n".into(),
            cmd(Request::Arith {
                key: b"k",
                delta: 5,
                incr: true,
                noreply: false,
            }),
        ),
        ("incr k abc\r\n".into(), err(ProtocolError::InvalidDelta)),
        ("incr k -1\r\n".into(), err(ProtocolError::InvalidDelta)),
        (
            "decr k 18446744073709551616\r\n".into(),
            err(ProtocolError::InvalidDelta),
        ),
        (
            "incr k noreply\r\n".into(),
            err_quiet(ProtocolError::InvalidDelta),
        ),
        ("incr k\r\n".into(), bad_format()),
        (
            "decr k 1 noreply x\r\n".into(),
            cmd(Request::Arith {
                key: b"k",
                delta: 1,
                incr: false,
                noreply: false,
            }),
        ),
        (format!("incr {k251} 1\r\n"), bad_format()),
        // touch
        (
            "touch k 10\r\n".into(),
            cmd(Request::Touch {
                key: b"k",
                exptime: 10,
                noreply: false,
            }),
        ),
        (
            "touch k -1 noreply\r\n".into(),
            cmd(Request::Touch {
                key: b"k",
                exptime: -1,
                noreply: true,
            }),
        ),
        ("touch k abc\r\n".into(), err(ProtocolError::InvalidExptime)),
        (
            "touch k noreply\r\n".into(),
            err_quiet(ProtocolError::InvalidExptime),
        ),
        ("touch k\r\n".into(), bad_format()),
        ("touch k +1\r\n".into(), err(ProtocolError::InvalidExptime)),
        (format!("touch {k251} 1\r\n"), bad_format()),
        // flush_all
        (
            "flush_all\r\n".into(),
            cmd(Request::FlushAll {
                delay: 0,
                noreply: false,
            }),
        ),
        (
            "flush_all 10\r\n".into(),
            cmd(Request::FlushAll {
                delay: 10,
                noreply: false,
            }),
        ),
        (
            "flush_all -5\r\n".into(),
            cmd(Request::FlushAll {
                delay: -5,
                noreply: false,
            }),
        ),
        (
            "flush_all noreply\r\n".into(),
            cmd(Request::FlushAll {
                delay: 0,
                noreply: true,
            }),
        ),
        (
            "flush_all 10 noreply\r\n".into(),
            cmd(Request::FlushAll {
                delay: 10,
                noreply: true,
            }),
        ),
        (
            "flush_all 10 foo\r\n".into(),
            cmd(Request::FlushAll {
                delay: 10,
                noreply: false,
            }),
        ),
        (
            "flush_all abc\r\n".into(),
            err(ProtocolError::InvalidExptime),
        ),
        (
            "flush_all abc noreply\r\n".into(),
            err_quiet(ProtocolError::InvalidExptime),
        ),
        (
            "flush_all noreply foo\r\n".into(),
            err(ProtocolError::InvalidExptime),
        ),
        (
            "flush_all 1 2 3\r\n".into(),
            cmd(Request::FlushAll {
                delay: 1,
                noreply: false,
            }),
        ),
        // verbosity
        (
            "verbosity 1\r\n".into(),
            cmd(Request::Verbosity {
                level: 1,
                noreply: false,
            }),
        ),
        (
            "verbosity 1 noreply\r\n".into(),
            cmd(Request::Verbosity {
                level: 1,
                noreply: true,
            }),
        ),
        (
            "verbosity 7 foo\r\n".into(),
            cmd(Request::Verbosity {
                level: 7,
                noreply: false,
            }),
        ),
        ("verbosity\r\n".into(), bad_format()),
        ("verbosity abc\r\n".into(), bad_format()),
        ("verbosity -1\r\n".into(), bad_format()),
        (
            "verbosity noreply\r\n".into(),
            err_quiet(ProtocolError::BadCommandLineFormat),
        ),
        (
            "verbosity 1 2 3\r\n".into(),
            cmd(Request::Verbosity {
                level: 1,
                noreply: false,
            }),
        ),
        // shutdown
        (
            "shutdown\r\n".into(),
            cmd(Request::Shutdown {
                mode: ShutdownMode::Immediate,
            }),
        ),
        (
            "shutdown graceful\r\n".into(),
            cmd(Request::Shutdown {
                mode: ShutdownMode::Graceful,
            }),
        ),
        (
            "shutdown foo\r\n".into(),
            cmd(Request::Shutdown {
                mode: ShutdownMode::Invalid,
            }),
        ),
        (
            "shutdown noreply\r\n".into(),
            cmd(Request::Shutdown {
                mode: ShutdownMode::Invalid,
            }),
        ),
        (
            "shutdown graceful x\r\n".into(),
            cmd(Request::Shutdown {
                mode: ShutdownMode::Invalid,
            }),
        ),
        // cache_memlimit
        (
            "cache_memlimit 64\r\n".into(),
            cmd(Request::CacheMemlimit {
                megabytes: 64,
                noreply: false,
            }),
        ),
        (
            "cache_memlimit 64 noreply\r\n".into(),
            cmd(Request::CacheMemlimit {
                megabytes: 64,
                noreply: true,
            }),
        ),
        (
            "cache_memlimit 64 foo\r\n".into(),
            cmd(Request::CacheMemlimit {
                megabytes: 64,
                noreply: false,
            }),
        ),
        // Beyond 32 bits: refused, no longer wrapped.
        ("cache_memlimit 4294967304\r\n".into(), unknown()),
        ("cache_memlimit abc\r\n".into(), unknown()),
        (
            "cache_memlimit abc noreply\r\n".into(),
            err_quiet(ProtocolError::UnknownCommand),
        ),
        ("cache_memlimit\r\n".into(), unknown()),
        (
            "cache_memlimit 1 2 3\r\n".into(),
            cmd(Request::CacheMemlimit {
                megabytes: 1,
                noreply: false,
            }),
        ),
        // meta
        ("mn\r\n".into(), cmd(Request::MetaNoop)),
        ("mn a b c\r\n".into(), cmd(Request::MetaNoop)),
        // (meta.rs has the meta commands' own table)
        ("mg\r\n".into(), bad_format()),
        ("ms\r\n".into(), bad_format()),
        ("me\r\n".into(), bad_format()),
        ("mg k v v\r\n".into(), err(ProtocolError::DuplicateFlag)),
        ("mx\r\n".into(), unknown()),
        ("MN\r\n".into(), unknown()),
        // unknown commands and HTTP
        ("bogus\r\n".into(), unknown()),
        ("GET / HTTP/1.1\r\n".into(), Frame::Close),
        ("POST / HTTP/1.0\r\n".into(), Frame::Close),
        ("HTTP/1.1\r\n".into(), unknown()),
        ("xx HTTP/\r\n".into(), Frame::Close),
        ("mxx / HTTP/1.1\r\n".into(), Frame::Close),
        ("xx HTTP\r\n".into(), unknown()),
        ("x HTTP/1.1\r\n".into(), Frame::Close),
        ("sx / HTTP/1.1\r\n".into(), Frame::Close),
        ("gx / HTTP/1.1\r\n".into(), Frame::Close),
        ("mx / HTTP/1.1\r\n".into(), unknown()),
        // A known command, so never the HTTP close (execute answers ERROR).
        (
            "lru_crawler x HTTP/1.1\r\n".into(),
            cmd(Request::LruCrawler {
                args: Keys::new(b" x HTTP/1.1"),
                noreply: false,
            }),
        ),
        (
            "lru_crawler\r\n".into(),
            cmd(Request::LruCrawler {
                args: Keys::new(b""),
                noreply: false,
            }),
        ),
        (
            "slabs automove 1 noreply\r\n".into(),
            cmd(Request::Slabs {
                args: Keys::new(b" automove 1 noreply"),
                noreply: true,
            }),
        ),
        (
            "lru mode flat\r\n".into(),
            cmd(Request::Lru {
                args: Keys::new(b" mode flat"),
                noreply: false,
            }),
        ),
        // storage lines that fail before their data length is known: the
        // block is left to be read as a command line
        ("set k 0 0\r\n".into(), bad_format()),
        ("set\tk 0 0 1\r\n".into(), unknown()),
        ("set k 0 0 abc\r\n".into(), bad_format()),
        ("set k 0 0 +1\r\n".into(), bad_format()),
        ("set k 0 0 1\x0b\r\n".into(), bad_format()),
        ("set k 0 0 4294967297\r\n".into(), bad_format()),
        ("set k 0 0 -1\r\n".into(), bad_format()),
        ("set k 0 0 2147483646\r\n".into(), bad_format()),
        ("set k 0 0 2147483648\r\n".into(), bad_format()),
        ("add k 0 0 -1\r\n".into(), bad_format()),
        // found before `noreply` is looked at
        ("set k 0 0 noreply\r\n".into(), bad_format()),
        // ... and after it: the block is swallowed
        ("cas k 0 0 1\r\na\r\n".into(), refused(false)),
        ("set k abc 0 1\r\na\r\n".into(), refused(false)),
        ("set k 0x10 0 1\r\na\r\n".into(), refused(false)),
        ("set k 12abc 0 1\r\na\r\n".into(), refused(false)),
        ("set k 1.5 0 1\r\na\r\n".into(), refused(false)),
        ("set k -1 0 1\r\na\r\n".into(), refused(false)),
        (
            "set k 18446744073709551616 0 1\r\na\r\n".into(),
            refused(false),
        ),
        ("set k 0 abc 1\r\na\r\n".into(), refused(false)),
        (
            "set k 0 9223372036854775808 1\r\na\r\n".into(),
            refused(false),
        ),
        ("set k x 0 1 noreply\r\na\r\n".into(), refused(true)),
        (format!("set {k251} 0 0 1\r\na\r\n"), refused(false)),
        (
            format!("prepend {k251} 0 0 1 noreply\r\na\r\n"),
            refused(true),
        ),
        (
            "cas k 0 0 1 18446744073709551616\r\na\r\n".into(),
            refused(false),
        ),
        ("cas k 0 0 1 -1\r\na\r\n".into(), refused(false)),
        ("cas k 0 0 1 +1\r\na\r\n".into(), refused(false)),
        ("cas k 0 0 1 noreply\r\na\r\n".into(), refused(true)),
    ];
    assert_whole_lines(&cases);
    // A 250-byte key is fine everywhere.
    let line = format!("delete {k250}\r\n");
    assert_eq!(
        first(line.as_bytes()).1,
        cmd(Request::Delete {
            key: k250.as_bytes(),
            noreply: false
        })
    );
    let line = format!("get {k250}\r\n");
    assert!(matches!(
        first(line.as_bytes()).1,
        Frame::Request(Request::Get { .. })
    ));
}

#[test]
fn retrieval_keys() {
    let check = |input: &[u8], want_keys: &[&[u8]], want_cas: bool, want_exptime: Option<i64>| {
        let (consumed, frame) = first(input);
        assert_eq!(consumed, input.len());
        let (keys, cas, exptime) = match frame {
            Frame::Request(Request::Get { keys, cas }) => (keys, cas, None),
            Frame::Request(Request::Gat { keys, cas, exptime }) => (keys, cas, Some(exptime)),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        };
        let want: Vec<Vec<u8>> = want_keys.iter().map(|k| k.to_vec()).collect();
        assert_eq!(
            key_list(&keys),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(cas, want_cas);
        assert_eq!(exptime, want_exptime);
    };
    check(b"get a\r\n", &[b"a"], false, None);
    check(b"get a b  c \r\n", &[b"a", b"b", b"c"], false, None);
    check(b"gets a\n", &[b"a"], true, None);
    check(b"get foo noreply\r\n", &[b"foo", b"noreply"], false, None);
    check(b"get a\tb\x01\r\n", &[b"a\tb\x01"], false, None);
    check(b"get a\rb\r\n", &[b"a\rb"], false, None);
    check(b"get a\0b c\r\n", &[b"a\0b", b"c"], false, None);
    check(b"gat 10 a b\r\n", &[b"a", b"b"], false, Some(10));
    check(b"gats -1 a\r\n", &[b"a"], true, Some(-1));

    // Far more keys than the tokenizer splits: all are kept.
    let mut line = b"get".to_vec();
    for i in 0..500 {
        line.extend_from_slice(format!(" key{i}").as_bytes());
    }
    line.extend_from_slice(b"\r\n");
    let (consumed, frame) = first(&line);
    assert_eq!(consumed, line.len());
    let Frame::Request(Request::Get { keys, cas: false }) = frame else {
        panic!("{frame:?}")
    };
    let keys = key_list(&keys);
    assert_eq!(keys.len(), 500);
    assert_eq!(keys[499], b"key499");
    // ... and a long key past the 23rd word still fails the command.
    let mut line = b"gat 1".to_vec();
    for i in 0..40 {
        line.extend_from_slice(format!(" key{i}").as_bytes());
    }
    line.extend_from_slice(format!(" {}\r\n", "k".repeat(251)).as_bytes());
    assert_eq!(first(&line).1, get_key_too_long());
}

#[test]
fn stats_arguments() {
    for (input, want) in [
        (&b"stats\r\n"[..], vec![]),
        (b"stats   \r\n", vec![]),
        (b"stats settings\r\n", vec![b"settings".to_vec()]),
        (
            b"stats detail  on\r\n",
            vec![b"detail".to_vec(), b"on".to_vec()],
        ),
    ] {
        let (_, frame) = first(input);
        let Frame::Request(Request::Stats { args }) = frame else {
            panic!("{frame:?}")
        };
        assert_eq!(key_list(&args), want);
    }
}

/// Storage commands with their data block: frame and consumed.
#[test]
fn storage_commands() {
    let k250 = "k".repeat(250);
    let with_k250 = format!("set {k250} 0 0 1\r\na\r\n");
    let cases: Vec<(&[u8], Frame<'_>)> = vec![
        (b"set k 0 0 1\r\na\r\n", set(b"k", b"a")),
        (b"set k 0 0 1\na\r\n", set(b"k", b"a")),
        (b"set k 0 0 0\r\n\r\n", set(b"k", b"")),
        (b"set   k  0 0 1  \r\na\r\n", set(b"k", b"a")),
        (b"set k\0x 0 0 1\r\na\r\n", set(b"k\0x", b"a")),
        (b"set k 0 0 4\r\n\r\n\r\n\r\n", set(b"k", b"\r\n\r\n")),
        (
            b"set k 5 100 3 noreply\r\nabc\r\n",
            store(StoreMode::Set, b"k", 5, 100, b"abc", 0, true),
        ),
        (b"set k 0 0 1 NOREPLY\r\na\r\n", set(b"k", b"a")),
        (
            b"add k 1 2 1\r\na\r\n",
            store(StoreMode::Add, b"k", 1, 2, b"a", 0, false),
        ),
        (
            b"replace k 1 2 1\r\na\r\n",
            store(StoreMode::Replace, b"k", 1, 2, b"a", 0, false),
        ),
        (
            b"append k 1 2 1 noreply\r\na\r\n",
            store(StoreMode::Append, b"k", 1, 2, b"a", 0, true),
        ),
        (
            b"prepend k 1 2 1\r\na\r\n",
            store(StoreMode::Prepend, b"k", 1, 2, b"a", 0, false),
        ),
        (
            b"cas k 1 2 3 99\r\nabc\r\n",
            store(StoreMode::Cas, b"k", 1, 2, b"abc", 99, false),
        ),
        (
            b"cas k 1 2 3 99 noreply\r\nabc\r\n",
            store(StoreMode::Cas, b"k", 1, 2, b"abc", 99, true),
        ),
        (
            b"cas k 0 0 1 18446744073709551615\r\na\r\n",
            store(StoreMode::Cas, b"k", 0, 0, b"a", u64::MAX, false),
        ),
        // the cas value is plain digits
        (b"cas k 0 0 1 +0\r\na\r\n", refused(false)),
        // number quirks
        (
            b"set k 4294967295 0 1\r\na\r\n",
            store(StoreMode::Set, b"k", u32::MAX, 0, b"a", 0, false),
        ),
        (b"set k 4294967296 0 1\r\na\r\n", set(b"k", b"a")),
        (
            b"set k 4294967301 0 1\r\na\r\n",
            store(StoreMode::Set, b"k", 5, 0, b"a", 0, false),
        ),
        (
            b"set k -18446744073709551615 0 1\r\na\r\n",
            store(StoreMode::Set, b"k", 1, 0, b"a", 0, false),
        ),
        (b"set k -0 -0 -0\r\n\r\n", set(b"k", b"")),
        (
            b"set k +5 0100 1\r\na\r\n",
            store(StoreMode::Set, b"k", 5, 100, b"a", 0, false),
        ),
        (
            b"set k \t5 0 1\r\na\r\n",
            store(StoreMode::Set, b"k", 5, 0, b"a", 0, false),
        ),
        (
            b"set k 5\tx 0 1\r\na\r\n",
            store(StoreMode::Set, b"k", 5, 0, b"a", 0, false),
        ),
        (
            b"set k 0 -1 1\r\na\r\n",
            store(StoreMode::Set, b"k", 0, -1, b"a", 0, false),
        ),
        (
            b"set k 0 99999999999 1\r\na\r\n",
            store(
                StoreMode::Set,
                b"k",
                0,
                i64::from(99999999999i64 as i32),
                b"a",
                0,
                false,
            ),
        ),
        // key bytes
        (b"set a\tb 0 0 1\r\nz\r\n", set(b"a\tb", b"z")),
        (b"set a\rb\x01 0 0 1\r\nz\r\n", set(b"a\rb\x01", b"z")),
        (with_k250.as_bytes(), set(k250.as_bytes(), b"a")),
        // bad data chunks consume exactly <bytes>+2
        (b"set k 0 0 1\r\nab\r\n", bad_chunk(false)),
        (b"set k 0 0 1\r\na\nX", bad_chunk(false)),
        (b"set k 0 0 3\r\nabcde\r\n", bad_chunk(false)),
        (b"set k 0 0 1 noreply\r\nab\r\n", bad_chunk(true)),
        (b"cas k 0 0 1 5\r\nabc", bad_chunk(false)),
    ];
    for (input, want) in &cases {
        let (frames, _) = decode_all(input);
        let (consumed, frame) = &frames[0];
        assert_eq!(
            frame.as_ref(),
            Some(want),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        let line_len = input.iter().position(|&b| b == b'\n').unwrap() + 1;
        let expect = match want {
            Frame::Error { .. } => {
                let t = Tokens::new(&input[..line_len]);
                let bytes: usize = String::from_utf8_lossy(t.get(4)).trim().parse().unwrap();
                line_len + bytes + 2
            }
            _ => input.len(),
        };
        assert_eq!(
            *consumed,
            expect,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn token_cap_of_24() {
    // Words past those a command reads are ignored, however many.
    let words: String = (0..30).map(|i| format!(" w{i}")).collect();
    for (line, want) in [
        (
            format!("delete k{words}\r\n"),
            cmd(Request::Delete {
                key: b"k",
                noreply: false,
            }),
        ),
        (
            format!("incr k 1{words}\r\n"),
            cmd(Request::Arith {
                key: b"k",
                delta: 1,
                incr: true,
                noreply: false,
            }),
        ),
        (
            format!("touch k 1{words}\r\n"),
            cmd(Request::Touch {
                key: b"k",
                exptime: 1,
                noreply: false,
            }),
        ),
        (
            format!("verbosity 1{words}\r\n"),
            cmd(Request::Verbosity {
                level: 1,
                noreply: false,
            }),
        ),
        (
            format!("flush_all 0{words}\r\n"),
            cmd(Request::FlushAll {
                delay: 0,
                noreply: false,
            }),
        ),
        (
            format!("cache_memlimit 64{words}\r\n"),
            cmd(Request::CacheMemlimit {
                megabytes: 64,
                noreply: false,
            }),
        ),
        // the HTTP check sees the 23rd word, not the last one
        (format!("FOO{words} HTTP/1.1\r\n"), unknown()),
    ] {
        assert_eq!(first(line.as_bytes()), (line.len(), want), "{line}");
    }
    let line = format!("set k 0 0 1{words}\r\na\r\n");
    assert_eq!(first(line.as_bytes()), (line.len(), set(b"k", b"a")));
    let words: String = (1..22).map(|i| format!(" w{i}")).collect();
    let line = format!("FOO{words} HTTP/1.1 x\r\n");
    assert_eq!(first(line.as_bytes()).1, Frame::Close);
    let line = "shutdown a b c d e f g h i j k l m n o p q r s t u v w x y z\r\n";
    assert_eq!(
        first(line.as_bytes()).1,
        cmd(Request::Shutdown {
            mode: ShutdownMode::Invalid
        })
    );
}
