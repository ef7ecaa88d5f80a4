//! How a read command's reply counts as hits and misses. Pure, so the
//! definition is tested and documented in one place:
//!
//! | commands | hit | miss |
//! |---|---|---|
//! | GET, GETEX, GETDEL, HGET, LINDEX, ZSCORE, ZRANK, ZREVRANK, SRANDMEMBER (no count) | a value | a null |
//! | MGET, HMGET, ZMSCORE | each non-null element | each null element |
//! | EXISTS | each key that exists (the reply) | each that does not |
//! | HGETALL, HKEYS, HVALS, SMEMBERS, LRANGE, ZRANGE, ZRANGEBYSCORE, ZREVRANGE, XRANGE, XREVRANGE | a non-empty reply | an empty one |
//!
//! Error replies count as neither. Other commands are not counted.

use crate::command::{Counted, Profile};
use crate::num::parse_i64;
use crate::reply::reply_len;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    Nullable,
    PerElement,
    /// EXISTS with this many keys.
    Exists(u32),
    NonEmpty,
}

/// The tally of a command, from its profile; `argc` counts the name.
pub fn tally(p: &Profile, argc: usize) -> Option<Tally> {
    Some(match p.counted? {
        Counted::Nullable => Tally::Nullable,
        Counted::NullableWithoutCount if argc == 2 => Tally::Nullable,
        Counted::NullableWithoutCount => return None,
        Counted::PerElement => Tally::PerElement,
        Counted::Exists => Tally::Exists(u32::try_from(argc - 1).unwrap_or(u32::MAX)),
        Counted::NonEmpty => Tally::NonEmpty,
    })
}

fn is_null(reply: &[u8]) -> bool {
    reply.starts_with(b"$-1\r\n") || reply.starts_with(b"*-1\r\n") || reply.starts_with(b"_\r\n")
}

fn header(reply: &[u8]) -> Option<(u8, i64, usize)> {
    let end = reply.windows(2).position(|w| w == b"\r\n")?;
    Some((*reply.first()?, parse_i64(&reply[1..end])?, end + 2))
}

/// (hits, misses) of one complete reply; `None` for an error or an
/// unexpected shape.
pub fn count(t: Tally, reply: &[u8]) -> Option<(u64, u64)> {
    if reply.first() == Some(&b'-') || reply.first() == Some(&b'!') {
        return None;
    }
    match t {
        Tally::Nullable => Some(if is_null(reply) { (0, 1) } else { (1, 0) }),
        Tally::NonEmpty => {
            let (kind, n, _) = header(reply)?;
            matches!(kind, b'*' | b'%' | b'~').then_some(if n > 0 { (1, 0) } else { (0, 1) })
        }
        Tally::Exists(keys) => {
            let (kind, n, _) = header(reply)?;
            (kind == b':' && n >= 0).then(|| (n as u64, u64::from(keys).saturating_sub(n as u64)))
        }
        Tally::PerElement => {
            let (kind, n, mut pos) = header(reply)?;
            if kind != b'*' {
                return None;
            }
            let (mut hits, mut misses) = (0, 0);
            for _ in 0..n {
                let rest = reply.get(pos..)?;
                if is_null(rest) {
                    misses += 1;
                } else {
                    hits += 1;
                }
                pos += reply_len(rest).ok()??;
            }
            Some((hits, misses))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_table() {
        assert_eq!(count(Tally::Nullable, b"$1\r\nv\r\n"), Some((1, 0)));
        assert_eq!(count(Tally::Nullable, b"$-1\r\n"), Some((0, 1)));
        assert_eq!(count(Tally::Nullable, b"_\r\n"), Some((0, 1)));
        assert_eq!(count(Tally::Nullable, b"-WRONGTYPE x\r\n"), None);
        assert_eq!(count(Tally::PerElement, b"*3\r\n$1\r\na\r\n$-1\r\n_\r\n"), Some((1, 2)));
        assert_eq!(count(Tally::Exists(3), b":2\r\n"), Some((2, 1)));
        assert_eq!(count(Tally::NonEmpty, b"*0\r\n"), Some((0, 1)));
        assert_eq!(count(Tally::NonEmpty, b"%1\r\n+f\r\n+v\r\n"), Some((1, 0)));
        let of = |name: &[u8]| crate::command::profile(crate::command::lookup(name).unwrap());
        assert_eq!(tally(of(b"srandmember"), 3), None);
        assert_eq!(tally(of(b"srandmember"), 2), Some(Tally::Nullable));
        assert_eq!(tally(of(b"exists"), 4), Some(Tally::Exists(3)));
        assert_eq!(tally(of(b"set"), 3), None);
    }
}
