//! One reply from the replies of a command split across nodes (a cluster's
//! slots, a ring's nodes): what the client would have had from one Redis.

use crate::command::Combine;
use crate::reply::reply_len;
use bytes::{BufMut, Bytes, BytesMut};

/// How the parts' replies make the client's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// MGET: one array; `order[i]` is (part, element of that part's array)
    /// of the client's i-th key.
    Arrays { order: Vec<(usize, usize)> },
    /// KEYS: every part's array, one after the other.
    Concat,
    /// PUBSUB SHARDNUMSUB: flat (name, count) pairs; `order[i]` is (part,
    /// pair of that part) of the client's i-th channel.
    Pairs { order: Vec<(usize, usize)> },
    /// MSET: `+OK` when every part said so.
    AllOk,
    /// SCRIPT LOAD on every node: each answers the same (the SHA).
    First,
    /// DEL, UNLINK, EXISTS, TOUCH: the sum of the parts' integers.
    Sum,
    /// SCAN of one node: the node's cursor turned into the client's
    /// (see [`scan_cursor`]); the keys pass as they are.
    Scan { node: usize, nodes: usize },
}

impl From<Combine> for Merge {
    /// The merge a command's profile names; orders are filled in by the split.
    fn from(how: Combine) -> Merge {
        match how {
            Combine::Arrays => Merge::Arrays { order: Vec::new() },
            Combine::Pairs => Merge::Pairs { order: Vec::new() },
            Combine::AllOk => Merge::AllOk,
            Combine::Sum => Merge::Sum,
            Combine::Concat => Merge::Concat,
            Combine::First => Merge::First,
        }
    }
}

/// Bits of a client's SCAN cursor that name the node; the node's own cursor
/// is shifted above them.
const NODE_BITS: u32 = 12;
pub const MAX_SCAN_NODES: usize = 1 << NODE_BITS;

/// The client's cursor for `cursor` of node `node`; 0 when the last node is done.
pub fn scan_cursor(node: usize, nodes: usize, cursor: u64) -> Option<u64> {
    match (cursor, node + 1 < nodes) {
        (0, true) => Some((node + 1) as u64),
        (0, false) => Some(0),
        (c, _) if c < (1 << (64 - NODE_BITS)) => Some((c << NODE_BITS) | node as u64),
        _ => None,
    }
}

/// The node and its own cursor from a client's SCAN cursor.
pub fn split_scan_cursor(cursor: u64) -> (usize, u64) {
    ((cursor & ((1 << NODE_BITS) - 1)) as usize, cursor >> NODE_BITS)
}

fn error(message: &str) -> Bytes {
    Bytes::from(format!("-ERR {message}\r\n"))
}

/// The elements of an array reply (`*n` or RESP3 `~n`/`*n`), each whole.
fn elements(reply: &[u8]) -> Option<Vec<&[u8]>> {
    if !matches!(reply.first(), Some(b'*' | b'~')) {
        return None;
    }
    let end = reply.windows(2).position(|w| w == b"\r\n")?;
    let n: usize = std::str::from_utf8(&reply[1..end]).ok()?.parse().ok()?;
    let mut pos = end + 2;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = reply_len(&reply[pos..]).ok()??;
        out.push(&reply[pos..pos + len]);
        pos += len;
    }
    Some(out)
}

fn integer(reply: &[u8]) -> Option<i64> {
    crate::num::parse_i64(reply.strip_prefix(b":")?.strip_suffix(b"\r\n")?)
}

pub fn merge(how: &Merge, parts: &[Bytes]) -> Bytes {
    // An error of any part is the command's error, as Redis gives one reply.
    if let Some(e) = parts.iter().find(|p| p.first() == Some(&b'-')) {
        return e.clone();
    }
    let mut out = BytesMut::new();
    match how {
        Merge::Arrays { order } => {
            let Some(arrays) = parts.iter().map(|p| elements(p)).collect::<Option<Vec<_>>>() else {
                return error("unexpected reply from a node while merging");
            };
            out.put_slice(format!("*{}\r\n", order.len()).as_bytes());
            for &(part, i) in order {
                match arrays.get(part).and_then(|a| a.get(i)) {
                    Some(e) => out.put_slice(e),
                    None => return error("a node's reply has fewer elements than keys"),
                }
            }
        }
        Merge::Concat => {
            let Some(arrays) = parts.iter().map(|p| elements(p)).collect::<Option<Vec<_>>>() else {
                return error("unexpected reply from a node while merging");
            };
            out.put_slice(format!("*{}\r\n", arrays.iter().map(Vec::len).sum::<usize>()).as_bytes());
            for e in arrays.iter().flatten() {
                out.put_slice(e);
            }
        }
        Merge::Pairs { order } => {
            let Some(arrays) = parts.iter().map(|p| elements(p)).collect::<Option<Vec<_>>>() else {
                return error("unexpected reply from a node while merging");
            };
            out.put_slice(format!("*{}\r\n", 2 * order.len()).as_bytes());
            for &(part, i) in order {
                match (arrays.get(part).and_then(|a| a.get(2 * i)), arrays.get(part).and_then(|a| a.get(2 * i + 1))) {
                    (Some(name), Some(count)) => {
                        out.put_slice(name);
                        out.put_slice(count);
                    }
                    _ => return error("a node's reply has fewer pairs than channels"),
                }
            }
        }
        Merge::AllOk => out.put_slice(b"+OK\r\n"),
        Merge::First => match parts.first() {
            Some(p) => out.put_slice(p),
            None => return error("no node to ask"),
        },
        Merge::Sum => match parts.iter().try_fold(0i64, |sum, p| sum.checked_add(integer(p)?)) {
            Some(n) => out.put_slice(format!(":{n}\r\n").as_bytes()),
            None => return error("unexpected reply from a node while merging"),
        },
        Merge::Scan { node, nodes } => {
            let page = parts.first().and_then(|p| elements(p)).filter(|e| e.len() == 2);
            let Some(page) = page else { return error("unexpected SCAN reply from a node") };
            let cursor = elements_bulk(page[0]).and_then(|c| std::str::from_utf8(c).ok()?.parse::<u64>().ok());
            let Some(cursor) = cursor.and_then(|c| scan_cursor(*node, *nodes, c)) else {
                return error("a node's SCAN cursor is out of range");
            };
            let cursor = cursor.to_string();
            out.put_slice(format!("*2\r\n${}\r\n{cursor}\r\n", cursor.len()).as_bytes());
            out.put_slice(page[1]);
        }
    }
    out.freeze()
}

/// The payload of a bulk string reply.
fn elements_bulk(reply: &[u8]) -> Option<&[u8]> {
    let end = reply.windows(2).position(|w| w == b"\r\n")?;
    let len: usize = std::str::from_utf8(reply.strip_prefix(b"$")?.get(..end - 1)?).ok()?.parse().ok()?;
    reply.get(end + 2..end + 2 + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn mget_reorders_by_key() {
        let parts = [b("*2\r\n$1\r\na\r\n$-1\r\n"), b("*1\r\n$1\r\nc\r\n")];
        let order = vec![(0, 0), (1, 0), (0, 1)];
        assert_eq!(merge(&Merge::Arrays { order }, &parts), b("*3\r\n$1\r\na\r\n$1\r\nc\r\n$-1\r\n"));
    }

    #[test]
    fn shardnumsub_pairs_keep_the_channel_order() {
        let parts = [b("*2\r\n$1\r\na\r\n:1\r\n"), b("*4\r\n$1\r\nb\r\n:0\r\n$1\r\nc\r\n:2\r\n")];
        let merged = merge(&Merge::Pairs { order: vec![(1, 0), (0, 0), (1, 1)] }, &parts);
        assert_eq!(merged, b("*6\r\n$1\r\nb\r\n:0\r\n$1\r\na\r\n:1\r\n$1\r\nc\r\n:2\r\n"));
    }

    #[test]
    fn script_load_answers_the_first_nodes_sha() {
        assert_eq!(merge(&Merge::First, &[b("$2\r\nab\r\n"), b("$2\r\nab\r\n")]), b("$2\r\nab\r\n"));
    }

    #[test]
    fn sums_oks_and_errors() {
        assert_eq!(merge(&Merge::Sum, &[b(":2\r\n"), b(":3\r\n")]), b(":5\r\n"));
        assert_eq!(merge(&Merge::AllOk, &[b("+OK\r\n"), b("+OK\r\n")]), b("+OK\r\n"));
        assert_eq!(merge(&Merge::Sum, &[b(":2\r\n"), b("-OOM no\r\n")]), b("-OOM no\r\n"));
        // Found by the fuzz target: a sum past i64 is an error, not a panic.
        let huge = b(":9222222222222222222\r\n");
        assert!(merge(&Merge::Sum, &[huge.clone(), huge]).starts_with(b"-ERR"));
        assert_eq!(merge(&Merge::Concat, &[b("*1\r\n$1\r\na\r\n"), b("*0\r\n")]), b("*1\r\n$1\r\na\r\n"));
    }

    #[test]
    fn scan_cursors_walk_every_node_once() {
        assert_eq!(scan_cursor(0, 3, 0), Some(1));
        assert_eq!(scan_cursor(2, 3, 0), Some(0));
        let c = scan_cursor(1, 3, 17).unwrap();
        assert_eq!(split_scan_cursor(c), (1, 17));
        assert_eq!(split_scan_cursor(0), (0, 0));
        let page = b("*2\r\n$2\r\n17\r\n*1\r\n$1\r\nk\r\n");
        let merged = merge(&Merge::Scan { node: 1, nodes: 3 }, &[page]);
        assert_eq!(merged, Bytes::from(format!("*2\r\n$5\r\n{}\r\n*1\r\n$1\r\nk\r\n", (17 << 12) | 1)));
    }
}
