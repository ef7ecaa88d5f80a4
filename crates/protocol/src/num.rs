//! Integer arguments as Redis reads them.

/// Parses an integer the way Redis's `string2ll` does: an optional `-`, then
/// digits, nothing else (no spaces, no `+`, no leading zeros except "0").
pub fn parse_i64(raw: &[u8]) -> Option<i64> {
    let digits = raw.strip_prefix(b"-").unwrap_or(raw);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_i64;

    #[test]
    fn accepts_what_redis_accepts() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        for bad in [&b""[..], b"+1", b" 1", b"1 ", b"01", b"-", b"1e3", b"99999999999999999999"] {
            assert_eq!(parse_i64(bad), None, "{:?}", bad);
        }
    }
}
