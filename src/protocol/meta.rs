//! The meta commands of memcached 1.6: `mg`, `ms`, `md`, `ma` and `me` (the
//! no-op `mn` is [`Request::MetaNoop`]). One command line in, one
//! [`Parsed`] out, with memcached 1.6.45's error for every malformed line.
//!
//! A meta command is `<cmd> <key> <flag>*` (`ms` has its data length after
//! the key). A flag is one byte, some with a value glued on (`T30`,
//! `Oopaque`). The parse follows `proto_parser.c` step by step, because the
//! order of the checks decides which error a client sees:
//!
//! 1. the line: no key (`ms`: no data length, or one that is not plain
//!    digits in `0..=i32::MAX-2`), or a flag token that starts with neither
//!    a letter (`A`..=`z`) nor a digit → `bad command line format`. Until
//!    `ms`'s length is known nothing can be swallowed, so these errors leave
//!    the data block to be read as a command line;
//! 2. a key over 250 bytes (before any base64 decoding) → `bad command line
//!    format` (from `ms` after its length, so its block is swallowed); more
//!    than 20 words → `options flags are too long`;
//! 3. the flag scan (`_meta_flag_preparse`): an unknown flag or a flag seen
//!    twice stops it at once; a bad value is remembered and the scan goes on,
//!    so the last such error is the one reported. `ma` reports every scan
//!    error as `invalid or duplicate flag`;
//! 4. per command checks (mode letters, opaque length) as below.
//!
//! Nothing is copied: the command keeps the key token and the raw flag
//! tokens, which the executor walks again to echo flags in request order.
//!
//! Must not know the classic commands, framing (the codec reads `ms`'s data
//! block and swallows a refused one) or what a flag does once parsed: that
//! is the executor's.

use super::base64;
use super::number::{token_i32, token_u32, token_u64};
use super::request::{MetaCommand, MetaFlags, MetaKey, MetaOp};
use super::tokens::Tokens;
use super::{Frame, KEY_MAX_LEN, Parsed, ProtocolError, Request};
use crate::item_rules::StoreMode;

/// memcached refuses a meta line of more than this many words, the command
/// and the key (and `ms`'s data length) included (`MFLAG_MAX_OPT_LENGTH`).
const MAX_WORDS: usize = 20;

/// The longest `O` token, the `O` included (`MFLAG_MAX_OPAQUE_LENGTH`).
const OPAQUE_MAX_LEN: usize = 32;

/// The line of an `ms` whose data length parsed: its data block follows,
/// and is swallowed whole if the command is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaSetHeader<'a> {
    /// The command, without its value yet.
    pub command: MetaCommand<'a>,
    /// The data length, without the CRLF; at most `i32::MAX - 2`.
    pub bytes: usize,
    /// An error found after the data length: swallow, then answer it.
    pub refused: Option<ProtocolError>,
}

impl<'a> MetaSetHeader<'a> {
    /// The command once its data block is known.
    pub fn with_value(&self, value: &'a [u8]) -> Request<'a> {
        Request::Meta(MetaCommand {
            value,
            ..self.command
        })
    }
}

fn error<'a>(error: ProtocolError) -> Parsed<'a> {
    // Meta errors are sent even with `q`.
    Parsed::Frame(Frame::Error {
        error,
        noreply: false,
        counts_as_set: false,
    })
}

/// Parses the line of a two-byte command starting with `m`.
pub fn parse_line<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let op = match t.get(0)[1] {
        b'n' => return Parsed::Frame(Frame::Request(Request::MetaNoop)),
        b'e' => return debug(t),
        b'g' => MetaOp::Get,
        b's' => MetaOp::Set {
            mode: StoreMode::Set,
        },
        b'd' => MetaOp::Delete,
        b'a' => MetaOp::Arith { incr: true },
        _ => return error(ProtocolError::UnknownCommand),
    };
    let is_set = matches!(op, MetaOp::Set { .. });
    let first_flag = if is_set { 3 } else { 2 };
    // memcached's tokenizer refuses the whole line for a flag token that
    // does not start with a letter or a digit.
    let odd_flag = (first_flag..t.words()).any(|i| {
        let c = t.get(i)[0];
        !((b'A'..=b'z').contains(&c) || c.is_ascii_digit())
    });
    if t.words() < first_flag || odd_flag {
        return error(ProtocolError::BadCommandLineFormat);
    }
    let key = t.get(1);
    // The tokenizer split the whole line (it stops only after 23 words), so
    // the raw rest of the line holds exactly the flag tokens.
    let raw = t.after(first_flag - 1);
    if is_set {
        return set(t, key, raw);
    }
    if key.len() > KEY_MAX_LEN {
        // Found by the flag scan, whose every error `ma` reports alike.
        return error(match op {
            MetaOp::Arith { .. } => ProtocolError::InvalidOrDuplicateFlag,
            _ => ProtocolError::BadCommandLineFormat,
        });
    }
    if t.words() > MAX_WORDS {
        return error(match op {
            MetaOp::Arith { .. } => ProtocolError::InvalidOrDuplicateFlag,
            _ => ProtocolError::GetFlagsTooLong,
        });
    }
    match op {
        // `M` is accepted by `mg` and means nothing there.
        MetaOp::Get => match scan_flags(t, first_flag, raw) {
            Ok((flags, _mode, binary)) => command(op, key, binary, flags),
            Err(e) => error(e),
        },
        MetaOp::Set { .. } => unreachable!("ms is parsed by set()"),
        MetaOp::Delete => match scan_flags(t, first_flag, raw) {
            Ok((flags, _, binary)) => {
                // md checks the opaque before it looks the key up.
                if long_opaque(&flags).is_some() {
                    return error(ProtocolError::OpaqueTooLong);
                }
                command(op, key, binary, flags)
            }
            Err(e) => error(e),
        },
        MetaOp::Arith { .. } => match scan_flags(t, first_flag, raw) {
            Ok((flags, mode, binary)) => {
                let incr = match mode {
                    None | Some(b'I') | Some(b'+') => true,
                    Some(b'D') | Some(b'-') => false,
                    Some(_) => return error(ProtocolError::InvalidArithMode),
                };
                // A long opaque is refused only once the delta has been
                // applied, as memcached does: the executor checks it.
                command(MetaOp::Arith { incr }, key, binary, flags)
            }
            Err(_) => error(ProtocolError::InvalidOrDuplicateFlag),
        },
        MetaOp::Debug => unreachable!("me is parsed by debug()"),
    }
}

fn command<'a>(op: MetaOp, key: &'a [u8], binary: bool, flags: MetaFlags<'a>) -> Parsed<'a> {
    Parsed::Frame(Frame::Request(Request::Meta(MetaCommand {
        op,
        key: MetaKey { token: key, binary },
        flags,
        value: &[],
    })))
}

/// The position among the flag tokens of the first `O` token longer than
/// memcached accepts. `mg` and `ma` refuse it only when they reach it, after
/// the flags before it took effect.
pub fn long_opaque(flags: &MetaFlags<'_>) -> Option<usize> {
    flags
        .tokens()
        .position(|t| t[0] == b'O' && t.len() > OPAQUE_MAX_LEN)
}

/// `ms <key> <datalen> <flag>*`: once the data length is read, every later
/// error swallows the data block.
fn set<'a>(t: &Tokens<'a>, key: &'a [u8], raw: &'a [u8]) -> Parsed<'a> {
    let bytes = match token_i32(t.get(2)) {
        Some(b) if (0..=i32::MAX - 2).contains(&b) => b as usize,
        _ => return error(ProtocolError::BadCommandLineFormat),
    };
    let refuse = |refused: ProtocolError| {
        Parsed::MetaSet(MetaSetHeader {
            command: MetaCommand {
                op: MetaOp::Set {
                    mode: StoreMode::Set,
                },
                key: MetaKey {
                    token: key,
                    binary: false,
                },
                flags: MetaFlags::new(raw),
                value: &[],
            },
            bytes,
            refused: Some(refused),
        })
    };
    // Found by the flag scan, so after the length: the block is swallowed.
    if key.len() > KEY_MAX_LEN {
        return refuse(ProtocolError::BadCommandLineFormat);
    }
    if t.words() > MAX_WORDS {
        return refuse(ProtocolError::GetFlagsTooLong);
    }
    let (flags, mode, binary) = match scan_flags(t, 3, raw) {
        Ok(scanned) => scanned,
        Err(e) => return refuse(e),
    };
    // The mode is checked before the opaque, so a bad mode wins.
    let mode = match mode {
        None | Some(b'S') => StoreMode::Set,
        Some(b'E') => StoreMode::Add,
        Some(b'A') => StoreMode::Append,
        Some(b'P') => StoreMode::Prepend,
        Some(b'R') => StoreMode::Replace,
        Some(_) => return refuse(ProtocolError::InvalidSetMode),
    };
    if long_opaque(&flags).is_some() {
        return refuse(ProtocolError::OpaqueTooLong);
    }
    Parsed::MetaSet(MetaSetHeader {
        command: MetaCommand {
            op: MetaOp::Set { mode },
            key: MetaKey { token: key, binary },
            flags,
            value: &[],
        },
        bytes,
        refused: None,
    })
}

/// `me <key> [b ...]`: only a `b` right after the key means anything, and
/// memcached 1.6.45 reads it only when another word follows it (its check
/// kept 1.6.18's word count, which included the line's end): `me <key> b`
/// looks up the token itself.
fn debug<'a>(t: &Tokens<'a>) -> Parsed<'a> {
    let key = t.get(1);
    if t.words() < 2 || key.len() > KEY_MAX_LEN {
        return error(ProtocolError::BadCommandLineFormat);
    }
    let binary = t.words() >= 4 && t.get(2) == b"b";
    if binary && base64::decode(key, &mut [0; KEY_MAX_LEN]) == 0 {
        return error(ProtocolError::BadCommandLineFormat);
    }
    command(MetaOp::Debug, key, binary, MetaFlags::new(&[]))
}

/// memcached's `_meta_flag_preparse`: checks each flag token from word
/// `first` on and reads the values. Returns the flags, the `M` letter and
/// whether the key is base64.
fn scan_flags<'a>(
    t: &Tokens<'a>,
    first: usize,
    raw: &'a [u8],
) -> Result<(MetaFlags<'a>, Option<u8>, bool), ProtocolError> {
    let mut flags = MetaFlags::new(raw);
    let mut mode = None;
    let mut binary = false;
    // A bad value does not stop the scan; the last one is reported.
    let mut bad: Option<ProtocolError> = None;
    let key = t.get(1);
    for i in first..t.words() {
        let token = t.get(i);
        let flag = token[0];
        let value = &token[1..];
        if flag >= 127 || flags.has(flag) {
            return Err(ProtocolError::DuplicateFlag);
        }
        flags.seen |= 1 << flag;
        match flag {
            b'b' => {
                binary = true;
                if base64::decode(key, &mut [0; KEY_MAX_LEN]) == 0 {
                    bad = Some(ProtocolError::KeyDecode);
                }
            }
            b'N' | b'T' | b'R' => match (!value.is_empty()).then(|| token_i32(value)).flatten() {
                Some(v) => {
                    let slot = match flag {
                        b'N' => &mut flags.vivify,
                        b'T' => &mut flags.ttl,
                        _ => &mut flags.recache,
                    };
                    *slot = Some(v);
                }
                None => bad = Some(ProtocolError::BadToken),
            },
            // memcached sets no message of its own for a bad `F`: the one
            // already pending, or the default, is reported.
            b'F' => match (!value.is_empty()).then(|| token_u32(value)).flatten() {
                Some(v) => flags.client_flags = v,
                None => {
                    bad.get_or_insert(ProtocolError::BadCommandLineFormat);
                }
            },
            b'C' => match (!value.is_empty()).then(|| token_u64(value)).flatten() {
                Some(v) => flags.compare_cas = Some(v),
                None => bad = Some(ProtocolError::BadToken),
            },
            b'E' => match (!value.is_empty()).then(|| token_u64(value)).flatten() {
                Some(v) => flags.cas_in = Some(v),
                None => bad = Some(ProtocolError::BadToken),
            },
            // The byte after `M`, whatever follows it; a bare `M` has the
            // line's next byte (a space or the line end), an invalid mode.
            b'M' => mode = Some(value.first().copied().unwrap_or(b' ')),
            b'J' => match (!value.is_empty()).then(|| token_u64(value)).flatten() {
                Some(v) => flags.initial = v,
                None => bad = Some(ProtocolError::InvalidInitial),
            },
            b'D' => match (!value.is_empty()).then(|| token_u64(value)).flatten() {
                Some(v) => flags.delta = v,
                None => bad = Some(ProtocolError::InvalidDeltaValue),
            },
            b'c' | b'f' | b'h' | b'k' | b'l' | b'q' | b's' | b't' | b'u' | b'v' | b'x' | b'O'
            | b'P' | b'L' | b'I' => {}
            _ => return Err(ProtocolError::InvalidFlag),
        }
    }
    match bad {
        Some(e) => Err(e),
        None => Ok((flags, mode, binary)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_line as parse;

    /// Parses one line as the codec hands it over: without its line end.
    fn parsed(line: &str) -> Parsed<'_> {
        parse(line.strip_suffix("\r\n").unwrap_or(line).as_bytes())
    }

    fn err(line: &str) -> ProtocolError {
        match parsed(line) {
            Parsed::Frame(Frame::Error {
                error,
                noreply: false,
                counts_as_set: false,
            }) => error,
            other => panic!("{line}: expected an error, got {other:?}"),
        }
    }

    fn meta(line: &str) -> MetaCommand<'_> {
        match parsed(line) {
            Parsed::Frame(Frame::Request(Request::Meta(m))) => m,
            other => panic!("{line}: expected a meta command, got {other:?}"),
        }
    }

    fn set_header(line: &str) -> MetaSetHeader<'_> {
        match parsed(line) {
            Parsed::MetaSet(h) => h,
            other => panic!("{line}: expected an ms header, got {other:?}"),
        }
    }

    fn refused(line: &str) -> ProtocolError {
        set_header(line)
            .refused
            .unwrap_or_else(|| panic!("{line}: not refused"))
    }

    fn flag_tokens<'a>(m: &MetaCommand<'a>) -> Vec<&'a [u8]> {
        m.flags.tokens().collect()
    }

    /// Errors of the line itself: each reply was observed from memcached 1.6.45.
    #[test]
    fn line_errors() {
        use ProtocolError::*;
        let k251 = "k".repeat(251);
        // 18 words in all: still under memcached's limit of 20
        let f16 = "s t c f h l k v O1 u P L I F1 C1 M1";
        let f19 = "s t c f h l k v O1 u P L I F1 C1 M1 J1 D1 Q";
        let cases: Vec<(String, ProtocolError)> = vec![
            ("mg\r\n".into(), BadCommandLineFormat),
            ("mg \r\n".into(), BadCommandLineFormat),
            ("ms\r\n".into(), BadCommandLineFormat),
            ("md\r\n".into(), BadCommandLineFormat),
            ("ma\r\n".into(), BadCommandLineFormat),
            ("mx k\r\n".into(), UnknownCommand),
            ("mz\r\n".into(), UnknownCommand),
            ("MG k\r\n".into(), UnknownCommand),
            (" mg k\r\n".into(), UnknownCommand),
            ("me\r\n".into(), BadCommandLineFormat),
            (format!("me {k251}\r\n"), BadCommandLineFormat),
            ("me ! b x\r\n".into(), BadCommandLineFormat),
            (format!("mg {k251} v\r\n"), BadCommandLineFormat),
            (format!("md {k251}\r\n"), BadCommandLineFormat),
            (format!("ma {k251}\r\n"), InvalidOrDuplicateFlag),
            // a long key is refused before the word count
            (format!("mg {k251} {f19}\r\n"), BadCommandLineFormat),
            (format!("mg k {f19}\r\n"), GetFlagsTooLong),
            (format!("md k {f19}\r\n"), GetFlagsTooLong),
            (format!("ma k {f19}\r\n"), InvalidOrDuplicateFlag),
            (format!("mg k {f16} Y\r\n"), InvalidFlag),
            // ms: no or a bad data length (plain digits only)
            ("ms k\r\n".into(), BadCommandLineFormat),
            ("ms k abc\r\n".into(), BadCommandLineFormat),
            ("ms k -1\r\n".into(), BadCommandLineFormat),
            ("ms k +1\r\n".into(), BadCommandLineFormat),
            ("ms k S2\r\n".into(), BadCommandLineFormat),
            ("ms k 2147483646\r\n".into(), BadCommandLineFormat),
            // a flag that starts with neither a letter nor a digit
            ("mg k \x7f\r\n".into(), BadCommandLineFormat),
            ("md k \u{ff}\r\n".into(), BadCommandLineFormat),
            ("mg k v !\r\n".into(), BadCommandLineFormat),
            // flag scan, mg
            (
                "mg a b c d e f g h i j k l m n o p q\r\n".into(),
                InvalidFlag,
            ),
            ("mg k noreply\r\n".into(), InvalidFlag),
            ("mg k 5\r\n".into(), InvalidFlag),
            ("mg k [\r\n".into(), InvalidFlag),
            ("mg k v v\r\n".into(), DuplicateFlag),
            ("mg k Tx Y\r\n".into(), InvalidFlag),
            ("mg k Y Tx\r\n".into(), InvalidFlag),
            ("mg k Tx MSS\r\n".into(), BadToken),
            ("mg k MSS Tx\r\n".into(), BadToken),
            ("mg k Tx Tx\r\n".into(), DuplicateFlag),
            ("mg k Jx\r\n".into(), InvalidInitial),
            ("mg k J\r\n".into(), InvalidInitial),
            ("mg k Dx\r\n".into(), InvalidDeltaValue),
            ("mg k Fx\r\n".into(), BadCommandLineFormat),
            ("mg k F\r\n".into(), BadCommandLineFormat),
            ("mg k F-1\r\n".into(), BadCommandLineFormat),
            ("mg k Tx Fx\r\n".into(), BadToken),
            ("mg k Fx Tx\r\n".into(), BadToken),
            ("mg k Cx\r\n".into(), BadToken),
            ("mg k C-1\r\n".into(), BadToken),
            ("mg k Nx\r\n".into(), BadToken),
            ("mg k Rx\r\n".into(), BadToken),
            ("mg k T\r\n".into(), BadToken),
            ("mg k T5x\r\n".into(), BadToken),
            ("mg k T+5\r\n".into(), BadToken),
            ("mg Zm9vYmFy== b k v\r\n".into(), KeyDecode),
            ("mg ==== b\r\n".into(), KeyDecode),
            ("mg Zg b\r\n".into(), KeyDecode),
            ("mg ! b\r\n".into(), KeyDecode),
            // md reports the scan's own errors
            ("md k q q\r\n".into(), DuplicateFlag),
            ("md k noreply\r\n".into(), InvalidFlag),
            ("md k Tx\r\n".into(), BadToken),
            ("md ! b\r\n".into(), KeyDecode),
            // ma: every scan error has one message
            ("ma k Tx\r\n".into(), InvalidOrDuplicateFlag),
            ("ma k Jx\r\n".into(), InvalidOrDuplicateFlag),
            ("ma k Dabc\r\n".into(), InvalidOrDuplicateFlag),
            ("ma k N0 J5 D-1\r\n".into(), InvalidOrDuplicateFlag),
            ("ma ! b\r\n".into(), InvalidOrDuplicateFlag),
            // the mode is the byte after M
            ("ma k MSS\r\n".into(), InvalidArithMode),
            ("ma k MX\r\n".into(), InvalidArithMode),
            ("ma k MX q\r\n".into(), InvalidArithMode),
            ("ma k Mi\r\n".into(), InvalidArithMode),
            ("ma k M\r\n".into(), InvalidArithMode),
            (format!("md k O{}\r\n", "x".repeat(32)), OpaqueTooLong),
        ];
        for (line, want) in cases {
            assert_eq!(err(&line), want, "{line:?}");
        }
    }

    /// `ms` errors found once the data length is known: the block is swallowed.
    #[test]
    fn set_refusals() {
        use ProtocolError::*;
        let long_opaque = format!("O{}", "x".repeat(32));
        let cases: Vec<(String, ProtocolError)> = vec![
            ("ms k 2 Y\r\n".into(), InvalidFlag),
            ("ms k 2 T1 T2\r\n".into(), DuplicateFlag),
            ("ms k 2 M\r\n".into(), InvalidSetMode),
            ("ms k 2 Mx\r\n".into(), InvalidSetMode),
            ("ms k 2 Ms\r\n".into(), InvalidSetMode),
            ("ms k 2 MI\r\n".into(), InvalidSetMode),
            ("ms k 2 T\r\n".into(), BadToken),
            ("ms k 2 F-1\r\n".into(), BadCommandLineFormat),
            ("ms !!!! 2 b\r\n".into(), KeyDecode),
            // a long key is found by the flag scan, after the length
            (
                format!("ms {} 2 Y\r\n", "k".repeat(251)),
                BadCommandLineFormat,
            ),
            (format!("ms k 2 {long_opaque}\r\n"), OpaqueTooLong),
            // the mode is checked before the opaque
            (format!("ms k 2 {long_opaque} MX\r\n"), InvalidSetMode),
        ];
        for (line, want) in cases {
            assert_eq!(refused(&line), want, "{line:?}");
            assert_eq!(set_header(&line).bytes, 2, "{line:?}");
        }
        // The largest data length memcached reads.
        assert_eq!(refused("ms k 2147483645 Y\r\n"), InvalidFlag);
        assert_eq!(set_header("ms k 2147483645\r\n").bytes, 2147483645);
    }

    #[test]
    fn get_flags_and_values() {
        let m = meta("mg  k   v  t T30 N-1 R5 O123 q F4294967295 C18446744073709551615 \r\n");
        assert_eq!(m.op, MetaOp::Get);
        assert_eq!(m.key.token(), b"k");
        assert!(!m.key.is_binary());
        for f in *b"vtTNROqFC" {
            assert!(m.flags.has(f), "{}", f as char);
        }
        for f in *b"kscbfhluPLIMJDxE" {
            assert!(!m.flags.has(f), "{}", f as char);
        }
        assert_eq!(m.flags.ttl, Some(30));
        assert_eq!(m.flags.vivify, Some(-1));
        assert_eq!(m.flags.recache, Some(5));
        assert_eq!(m.flags.client_flags, u32::MAX);
        assert_eq!(m.flags.compare_cas, Some(u64::MAX));
        assert_eq!(m.flags.delta, 1);
        assert_eq!(m.flags.initial, 0);
        assert!(m.flags.quiet());
        assert_eq!(
            flag_tokens(&m),
            vec![
                &b"v"[..],
                b"t",
                b"T30",
                b"N-1",
                b"R5",
                b"O123",
                b"q",
                b"F4294967295",
                b"C18446744073709551615"
            ]
        );
        assert_eq!(m.value, b"");

        // No flags at all; 17 flags; trailing bytes on a plain flag.
        let m = meta("mg k\r\n");
        assert_eq!(flag_tokens(&m), Vec::<&[u8]>::new());
        let m = meta("mg k s t c f h l k v O1 u P L I F1 C1 M1 J1\r\n");
        assert_eq!(flag_tokens(&m).len(), 17);
        assert!(meta("mg k vxyz\r\n").flags.has(b'v'));
        // Flags meant for other commands are accepted.
        let m = meta("mg k ME I\r\n");
        assert!(m.flags.has(b'M') && m.flags.has(b'I'));
        // A bare O is an empty opaque.
        assert_eq!(flag_tokens(&meta("mg k O\r\n")), vec![&b"O"[..]]);
        let ok31 = format!("mg k O{}\r\n", "x".repeat(31));
        assert!(meta(&ok31).flags.has(b'O'));
        // mg refuses a long opaque only where memcached writes it out.
        let long = format!("mg k O{}\r\n", "x".repeat(32));
        assert_eq!(long_opaque(&meta(&long).flags), Some(0));
    }

    #[test]
    fn binary_keys() {
        let mut buf = [0; KEY_MAX_LEN];
        let m = meta("mg Zm9v!!!!YmFy b k v\r\n");
        assert!(m.key.is_binary());
        assert_eq!(m.key.token(), b"Zm9v!!!!YmFy");
        assert_eq!(m.key.bytes(&mut buf), b"foobar");
        // `b` may come after `k`; it still applies.
        assert_eq!(meta("mg Zm9vYmFy k b\r\n").key.bytes(&mut buf), b"foobar");
        // Without `b` the token is the key.
        assert_eq!(meta("mg Zm9vYmFy k\r\n").key.bytes(&mut buf), b"Zm9vYmFy");
        let m = meta("me Zm9v b x\r\n");
        assert_eq!((m.op, m.key.bytes(&mut buf)), (MetaOp::Debug, &b"foo"[..]));
        // A `b` with no word after it is not read: the token is the key.
        let m = meta("me Zm9v b\r\n");
        assert_eq!((m.op, m.key.bytes(&mut buf)), (MetaOp::Debug, &b"Zm9v"[..]));
        assert_eq!(meta("me ! b\r\n").key.bytes(&mut buf), b"!");
        // me reads `b` only right after the key, and ignores other words.
        let m = meta("me Zm9v x b\r\n");
        assert!(!m.key.is_binary());
        assert!(
            !meta("me k a b c d e f g h i j k l m n o p q r s t u v w x y z\r\n")
                .key
                .is_binary()
        );
        // The 250-byte limit applies to the token, before decoding.
        let k248 = "QUJD".repeat(62);
        let line = format!("md {k248}!! b\r\n");
        assert_eq!(meta(&line).key.bytes(&mut buf).len(), 186);
    }

    #[test]
    fn delete_and_arith() {
        let m = meta("md k q I T30 C5 k O9 MX\r\n");
        assert_eq!(m.op, MetaOp::Delete);
        assert_eq!((m.flags.ttl, m.flags.compare_cas), (Some(30), Some(5)));
        assert!(m.flags.quiet() && m.flags.has(b'I'));

        assert_eq!(meta("ma k\r\n").op, MetaOp::Arith { incr: true });
        for (line, incr) in [
            ("ma k MI\r\n", true),
            ("ma k M+\r\n", true),
            ("ma k MD\r\n", false),
            ("ma k M-\r\n", false),
        ] {
            assert_eq!(meta(line).op, MetaOp::Arith { incr }, "{line}");
        }
        let m = meta("ma k N0 J42 D18446744073709551615 T-1 v t c\r\n");
        assert_eq!(
            (m.flags.vivify, m.flags.initial, m.flags.delta, m.flags.ttl),
            (Some(0), 42, u64::MAX, Some(-1))
        );
        // ma's long opaque is checked after the delta is applied.
        let long = format!("ma k O{}\r\n", "x".repeat(40));
        assert_eq!(long_opaque(&meta(&long).flags), Some(0));
    }

    #[test]
    fn set_headers() {
        let line = "ms k 5 T30 F7 c k O9 q MA C12 I\r\n";
        let h = set_header(line);
        assert_eq!(h.bytes, 5);
        assert_eq!(h.refused, None);
        let m = h.command;
        assert_eq!(
            m.op,
            MetaOp::Set {
                mode: StoreMode::Append
            }
        );
        assert_eq!(m.key.token(), b"k");
        assert_eq!(
            (m.flags.ttl, m.flags.client_flags, m.flags.compare_cas),
            (Some(30), 7, Some(12))
        );
        assert_eq!(
            flag_tokens(&m),
            vec![
                &b"T30"[..],
                b"F7",
                b"c",
                b"k",
                b"O9",
                b"q",
                b"MA",
                b"C12",
                b"I"
            ]
        );
        for (mode, want) in [
            ("", StoreMode::Set),
            (" MS", StoreMode::Set),
            (" ME", StoreMode::Add),
            (" MR", StoreMode::Replace),
            (" MA", StoreMode::Append),
            (" MP", StoreMode::Prepend),
        ] {
            let line = format!("ms k 0{mode}\r\n");
            assert_eq!(
                set_header(&line).command.op,
                MetaOp::Set { mode: want },
                "{line}"
            );
        }
        // Leading zeros in the data length (plain digits only).
        assert_eq!(set_header("ms k 01\r\n").bytes, 1);
        let h = set_header("ms Zm9vYmFy 1 b\r\n");
        assert!(h.command.key.is_binary());
        assert_eq!(
            h.with_value(b"x"),
            Request::Meta(MetaCommand {
                value: b"x",
                ..h.command
            })
        );
        // Flags meant for other commands are accepted by ms.
        assert_eq!(set_header("ms k 1 N5 R5 v s t f h l\r\n").refused, None);
    }

    /// The flags memcached 1.6.45 added: `E` (a CAS to give the item) on
    /// every command, `x` (drop the value) accepted by all.
    #[test]
    fn newer_flags() {
        use ProtocolError::*;
        let m = meta("md k x I T30 E18446744073709551615\r\n");
        assert!(m.flags.has(b'x') && m.flags.has(b'I'));
        assert_eq!(m.flags.cas_in, Some(u64::MAX));
        assert_eq!(meta("mg k E0 v\r\n").flags.cas_in, Some(0));
        assert_eq!(meta("mg k v\r\n").flags.cas_in, None);
        assert!(meta("mg k x\r\n").flags.has(b'x'));
        assert_eq!(meta("ma k E7 N0\r\n").flags.cas_in, Some(7));
        let h = set_header("ms k 1 E5 s MA N0\r\n");
        assert_eq!((h.refused, h.command.flags.cas_in), (None, Some(5)));
        assert!(h.command.flags.has(b's'));
        for line in ["mg k E\r\n", "mg k Ex\r\n", "md k E-1\r\n", "mg k E+1\r\n"] {
            assert_eq!(err(line), BadToken, "{line}");
        }
        assert_eq!(err("mg k E18446744073709551616\r\n"), BadToken);
        assert_eq!(err("ma k Ex\r\n"), InvalidOrDuplicateFlag);
        assert_eq!(err("md k x x\r\n"), DuplicateFlag);
        assert_eq!(refused("ms k 1 E\r\n"), BadToken);
    }

    #[test]
    fn noop_takes_any_arguments() {
        assert_eq!(
            parsed("mn a b c\r\n"),
            Parsed::Frame(Frame::Request(Request::MetaNoop))
        );
    }
}
