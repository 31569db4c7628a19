//! Numbers as memcached reads them: its `safe_strtoul`, `safe_strtoull` and
//! `safe_strtol` helpers over C's `strtoul`/`strtol`, wrap-arounds included,
//! because clients see which odd spellings are accepted (`+5`, `\t5`,
//! `5\tx`, `-0`) and which value a too-large one turns into.
//!
//! Knows only bytes and integers: which field takes which reader, and the
//! error for a bad one, are the parsers' business.

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_till1, take_while},
    character::complete::u64 as decimal,
    combinator::{not, opt},
};

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What `strtoull`/`strtoll` read from a token, plus memcached's end check:
/// leading white space (TAB and the like can be inside a token), an
/// optional sign, decimal digits whose value fits in 64 bits, then the end
/// of the token or a white-space byte (whatever follows that is ignored, so
/// `5\tx` reads as 5). Gives the sign (`true` for `-`) and the magnitude.
///
/// Only byte parsers are used: nom 8's character parsers (`one_of`,
/// `none_of`, `satisfy`) step over a matched byte above 0x7f by the UTF-8
/// length of the character it maps to, which runs past the end of a token.
fn c_number(token: &[u8]) -> IResult<&[u8], (bool, u64)> {
    // Nearly every number a client sends is plain digits: read them
    // directly, in one pass that gives up at the first other byte. Up to 19
    // digits cannot overflow 64 bits.
    if (1..=19).contains(&token.len()) {
        let mut value = 0u64;
        let plain = token.iter().all(|&b| {
            let digit = b.wrapping_sub(b'0');
            value = value * 10 + u64::from(digit);
            digit <= 9
        });
        if plain {
            return Ok((&token[token.len()..], (false, value)));
        }
    }
    let (rest, (_, sign, magnitude, _)) = (
        take_while(is_c_space),
        opt(alt((tag("+"), tag("-")))),
        decimal,
        not(take_till1(is_c_space)),
    )
        .parse(token)?;
    Ok((rest, (sign == Some(&b"-"[..]), magnitude)))
}

/// memcached's `safe_strtoull`: `strtoull` negates a `-` number modulo 2^64,
/// and only results that look negative as `i64` are then refused. So `-1` is
/// rejected but `-0` is 0 and `-18446744073709551615` is 1. `None` for no
/// number, trailing junk, or a magnitude above `u64::MAX`.
pub fn safe_strtoull(token: &[u8]) -> Option<u64> {
    let (_, (negative, magnitude)) = c_number(token).ok()?;
    if !negative {
        return Some(magnitude);
    }
    let value = magnitude.wrapping_neg();
    if (value as i64) < 0 {
        return None;
    }
    Some(value)
}

/// memcached's `safe_strtoul` on a 64-bit system: read as `unsigned long`
/// (64 bits, as [`safe_strtoull`]) and stored in a `uint32_t`, so values of
/// 2^32 and above wrap (4294967301 gives 5).
pub fn safe_strtoul(token: &[u8]) -> Option<u32> {
    safe_strtoull(token).map(|v| v as u32)
}

/// memcached's `safe_strtol`: read as a 64-bit `long` (out of range is an
/// error), then stored in an `int32_t`, so 99999999999 wraps and 4294967297
/// gives 1.
pub fn safe_strtol(token: &[u8]) -> Option<i32> {
    let (_, (negative, magnitude)) = c_number(token).ok()?;
    let value: i64 = if negative {
        if magnitude > 1 << 63 {
            return None;
        }
        0i64.wrapping_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()?
    };
    Some(value as i32)
}

/// memcached 1.6.45's token readers (`mcmc_toktou64` and friends): only
/// ASCII digits (a leading `-` for the signed one), at most `max_len` bytes,
/// no wrap-around. An empty token reads as 0, as there.
fn strict_digits(token: &[u8], max_len: usize) -> Option<(bool, u64)> {
    if token.len() > max_len {
        return None;
    }
    let (negative, digits) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, token),
    };
    let mut sum: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        sum = sum.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((negative, sum))
}

/// `mcmc_toktou64`: up to 22 digits, no sign.
pub fn token_u64(token: &[u8]) -> Option<u64> {
    match strict_digits(token, 22)? {
        (false, v) => Some(v),
        (true, _) => None,
    }
}

/// `mcmc_tokto32`: up to 11 bytes, an optional `-`, within `i32`.
pub fn token_i32(token: &[u8]) -> Option<i32> {
    let (negative, v) = strict_digits(token, 11)?;
    let v = i64::try_from(v).ok()?;
    i32::try_from(if negative { -v } else { v }).ok()
}

/// `mcmc_toktou32`: up to 11 digits, no sign, within `u32`.
pub fn token_u32(token: &[u8]) -> Option<u32> {
    match strict_digits(token, 11)? {
        (false, v) => u32::try_from(v).ok(),
        (true, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn numbers_follow_c_strtoul() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"+5", Some(5)),
            (b"0100", Some(100)),
            (b"-0", Some(0)),
            // The longest plain digits read directly, and the shortest
            // that go through the full reader.
            (b"9999999999999999999", Some(9_999_999_999_999_999_999)),
            (b"0000000000000000007", Some(7)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"99999999999999999999", None),
            (b"-1", None),
            (b"-18446744073709551615", Some(1)),
            (b"-9223372036854775808", None),
            (b"-9223372036854775809", Some(9223372036854775807)),
            (b"0x10", None),
            (b"12abc", None),
            (b"1.5", None),
            (b"", None),
            (b"+", None),
            (b"-", None),
            (b"abc", None),
            // C white space before the number and after it is accepted,
            // and anything after that white space is ignored.
            (b"\t5", Some(5)),
            (b"\x0b\x0c\r5", Some(5)),
            (b"5\t", Some(5)),
            (b"5\rjunk", Some(5)),
            (b"\t", None),
            (b"+-5", None),
            // Leading zeros do not count towards an overflow.
            (
                b"000000000000000000000018446744073709551615",
                Some(u64::MAX),
            ),
            // Bytes above 0x7f are neither digits nor C white space (nom
            // sees each byte as the Latin-1 character: '²', NBSP, NEL).
            (b"\xb2", None),
            (b"5\xb2", None),
            (b"\xa05", None),
            (b"5\x85", None),
        ];
        for &(token, want) in cases {
            assert_eq!(
                safe_strtoull(token),
                want,
                "{:?}",
                String::from_utf8_lossy(token)
            );
        }
    }

    #[test]
    fn u32_fields_wrap() {
        assert_eq!(safe_strtoul(b"4294967295"), Some(u32::MAX));
        assert_eq!(safe_strtoul(b"4294967296"), Some(0));
        assert_eq!(safe_strtoul(b"4294967301"), Some(5));
        assert_eq!(safe_strtoul(b"18446744073709551615"), Some(u32::MAX));
        assert_eq!(safe_strtoul(b"-1"), None);
        assert_eq!(safe_strtoul(b"-4294967296"), None);
    }

    #[test]
    fn i32_fields_are_read_as_i64_then_cut() {
        assert_eq!(safe_strtol(b"-1"), Some(-1));
        assert_eq!(safe_strtol(b"+7"), Some(7));
        assert_eq!(safe_strtol(b"2147483647"), Some(i32::MAX));
        assert_eq!(safe_strtol(b"2147483648"), Some(i32::MIN));
        assert_eq!(safe_strtol(b"4294967297"), Some(1));
        assert_eq!(safe_strtol(b"99999999999"), Some(99999999999i64 as i32));
        assert_eq!(safe_strtol(b"9223372036854775807"), Some(-1));
        assert_eq!(safe_strtol(b"9223372036854775808"), None);
        assert_eq!(safe_strtol(b"-9223372036854775808"), Some(0));
        assert_eq!(safe_strtol(b"-9223372036854775809"), None);
        assert_eq!(safe_strtol(b"1e3"), None);
    }

    #[test]
    fn token_readers_take_only_plain_digits() {
        assert_eq!(token_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(token_u64(b"18446744073709551616"), None);
        assert_eq!(token_u64(b"+5"), None);
        assert_eq!(token_u64(b"-0"), None);
        assert_eq!(token_u64(b"0x1"), None);
        assert_eq!(token_u64(b"007"), Some(7));
        assert_eq!(token_u64(b""), Some(0));
        assert_eq!(token_i32(b"-2147483648"), Some(i32::MIN));
        assert_eq!(token_i32(b"2147483648"), None);
        assert_eq!(token_i32(b"-1"), Some(-1));
        assert_eq!(token_i32(b" 1"), None);
        assert_eq!(token_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(token_u32(b"4294967296"), None);
        assert_eq!(token_u32(b"000000000001"), None, "longer than 11 bytes");
    }
}
