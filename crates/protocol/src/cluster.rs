//! Redis Cluster's side of the protocol: key slots of namespaced keys,
//! `MOVED`/`ASK` redirections and the `CLUSTER SLOTS` map.

use crate::Namespace;
use redis_protocol::resp2::types::OwnedFrame;

pub const SLOTS: usize = 16384;

/// The slot of a client key once it carries the namespace. Namespaces hold no
/// `{` or `}`, so a key with a hash tag keeps its slot, and keys that share a
/// tag share a slot after rewriting, as they did before.
pub fn key_slot(ns: &Namespace, key: &[u8]) -> u16 {
    if has_hash_tag(key) {
        return redis_protocol::redis_keyslot(key);
    }
    let mut full = Vec::with_capacity(ns.len() + key.len());
    full.extend_from_slice(ns.as_bytes());
    full.extend_from_slice(key);
    redis_protocol::redis_keyslot(&full)
}

/// A non-empty `{...}` after the first `{`: only it is hashed.
fn has_hash_tag(key: &[u8]) -> bool {
    match key.iter().position(|&b| b == b'{') {
        Some(open) => key[open + 1..].iter().position(|&b| b == b'}').is_some_and(|len| len > 0),
        None => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    /// The slot lives elsewhere for good: refresh the map.
    Moved,
    /// The slot is migrating: ask the target once, after `ASKING`.
    Ask,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub kind: RedirectKind,
    pub slot: u16,
    pub addr: String,
}

/// Reads `-MOVED 3999 127.0.0.1:6381` or `-ASK ...` (a whole reply, CRLF included).
pub fn parse_redirect(reply: &[u8]) -> Option<Redirect> {
    let line = reply.strip_prefix(b"-")?.strip_suffix(b"\r\n")?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split(' ');
    let kind = match parts.next()? {
        "MOVED" => RedirectKind::Moved,
        "ASK" => RedirectKind::Ask,
        _ => return None,
    };
    let slot: u16 = parts.next()?.parse().ok().filter(|s| (*s as usize) < SLOTS)?;
    let addr = parts.next()?;
    // Redis 7 may leave the host out (`:6381`) when it does not know its own.
    if addr.is_empty() || parts.next().is_some() {
        return None;
    }
    Some(Redirect { kind, slot, addr: addr.to_string() })
}

/// A cheap test before framing a batch's replies one by one.
pub fn may_hold_redirect(replies: &[u8]) -> bool {
    crate::reply::maybe_error_starts(replies).any(|i| {
        let at = &replies[i..];
        at.starts_with(b"-MOVED ") || at.starts_with(b"-ASK ")
    })
}

/// One range of slots, its master and its replicas (`host:port` each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub master: String,
    pub replicas: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlotsError {
    #[error("CLUSTER SLOTS failed: {0}")]
    Refused(String),
    #[error("CLUSTER SLOTS reply is malformed")]
    Malformed,
}

/// Parses a RESP2 `CLUSTER SLOTS` reply. `seed_host` stands in for an empty
/// host (a node that does not know its own address answers `""`).
pub fn parse_cluster_slots(reply: &[u8], seed_host: &str) -> Result<Vec<SlotRange>, SlotsError> {
    let frame = match redis_protocol::resp2::decode::decode(reply) {
        Ok(Some((frame, _))) => frame,
        _ => return Err(SlotsError::Malformed),
    };
    let ranges = match frame {
        OwnedFrame::Array(ranges) => ranges,
        OwnedFrame::Error(e) => return Err(SlotsError::Refused(e)),
        _ => return Err(SlotsError::Malformed),
    };
    let int = |f: &OwnedFrame| match f {
        OwnedFrame::Integer(i) => Some(*i),
        _ => None,
    };
    let node = |f: &OwnedFrame| -> Option<String> {
        let OwnedFrame::Array(parts) = f else { return None };
        let host = match parts.first()? {
            OwnedFrame::BulkString(h) | OwnedFrame::SimpleString(h) => String::from_utf8(h.clone()).ok()?,
            _ => return None,
        };
        let host = if host.is_empty() || host == "?" { seed_host.to_string() } else { host };
        let port = int(parts.get(1)?)?;
        if !(1..=65535).contains(&port) {
            return None;
        }
        Some(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
    };
    let mut out = Vec::with_capacity(ranges.len());
    for r in &ranges {
        let OwnedFrame::Array(parts) = r else { return Err(SlotsError::Malformed) };
        let slot = |i: usize| parts.get(i).and_then(int).filter(|s| (0..SLOTS as i64).contains(s)).map(|s| s as u16);
        let (Some(start), Some(end)) = (slot(0), slot(1)) else { return Err(SlotsError::Malformed) };
        let master = parts.get(2).and_then(node).ok_or(SlotsError::Malformed)?;
        let replicas = parts[3..].iter().filter_map(node).collect();
        if start > end {
            return Err(SlotsError::Malformed);
        }
        out.push(SlotRange { start, end, master, replicas });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_survive_namespacing() {
        let ns = Namespace::new("app:v1:").unwrap();
        assert_eq!(key_slot(&ns, b"{user1}.a"), key_slot(&ns, b"{user1}.b"));
        assert_eq!(key_slot(&ns, b"{user1}.a"), redis_protocol::redis_keyslot(b"user1"));
        // No tag, or an empty one: the whole namespaced key is hashed.
        assert_eq!(key_slot(&ns, b"plain"), redis_protocol::redis_keyslot(b"app:v1:plain"));
        assert_eq!(key_slot(&ns, b"{}x"), redis_protocol::redis_keyslot(b"app:v1:{}x"));
        // CLUSTER KEYSLOT of redis-server, for a known value.
        assert_eq!(redis_protocol::redis_keyslot(b"foo"), 12182);
    }

    #[test]
    fn reads_redirections() {
        let moved = parse_redirect(b"-MOVED 3999 127.0.0.1:6381\r\n").unwrap();
        assert_eq!(moved, Redirect { kind: RedirectKind::Moved, slot: 3999, addr: "127.0.0.1:6381".into() });
        assert_eq!(parse_redirect(b"-ASK 1 h:2\r\n").unwrap().kind, RedirectKind::Ask);
        assert_eq!(parse_redirect(b"-ERR MOVED 1 h:2\r\n"), None);
        assert_eq!(parse_redirect(b"-MOVED 99999 h:2\r\n"), None);
        assert!(may_hold_redirect(b"+OK\r\n-MOVED 1 h:2\r\n"));
        assert!(!may_hold_redirect(b"$7\r\n-MOVED \r\n"[..3].as_ref()));
    }

    #[test]
    fn parses_cluster_slots() {
        let reply = b"*2\r\n*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n*3\r\n$0\r\n\r\n:7003\r\n$2\r\nid\r\n\
*3\r\n:5461\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nid\r\n";
        let ranges = parse_cluster_slots(reply, "10.0.0.1").unwrap();
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0].master, "127.0.0.1:7000");
        assert_eq!(ranges[0].replicas, vec!["10.0.0.1:7003".to_string()]);
        assert_eq!((ranges[1].start, ranges[1].end), (5461, 16383));
        assert!(matches!(
            parse_cluster_slots(b"-ERR This instance has cluster support disabled\r\n", "h"),
            Err(SlotsError::Refused(_))
        ));
        assert_eq!(parse_cluster_slots(b"*1\r\n:1\r\n", "h"), Err(SlotsError::Malformed));
    }
}
