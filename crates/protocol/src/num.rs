//! Integer arguments as Redis reads them.

/// Parses an integer the way Redis's `string2ll` does: an optional `-`, then
/// digits, nothing else (no spaces, no `+`, no leading zeros, "0" but not "-0").
pub fn parse_i64(raw: &[u8]) -> Option<i64> {
    let (negative, digits) = match raw.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    // Redis takes "0" but no other leading zero, and not "-0".
    if digits.is_empty() || digits.len() > 19 || (digits[0] == b'0' && (digits.len() > 1 || negative)) {
        return None;
    }
    // Accumulated as a negative number: i64::MIN has no positive twin.
    let mut n: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(b - b'0'))?;
    }
    if negative {
        Some(n)
    } else {
        n.checked_neg()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_i64;

    #[test]
    fn accepts_what_redis_accepts() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"1234567"), Some(1234567));
        for bad in [
            &b""[..],
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-",
            b"1e3",
            b"99999999999999999999",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"-0",
            b"1-",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", bad);
        }
    }
}
