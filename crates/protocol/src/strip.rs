//! Taking the tenant's namespace back off key names inside replies.

use crate::namespace::Namespace;
use crate::num::parse_i64;
use crate::reply::{reply_len, ReplyError};
use bytes::BytesMut;

/// Where key names sit in a command's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKeys {
    /// No key names in the reply: it passes through untouched.
    None,
    /// `[key, ...]` or null: LMPOP, ZMPOP, BLPOP, BRPOP, BLMPOP, BZMPOP
    /// (`[key, elements]`), BZPOPMIN, BZPOPMAX (`[key, member, score]`).
    FirstElement,
    /// XREAD / XREADGROUP: RESP2 `[[key, entries], ...]`, RESP3 `{key: entries}`.
    StreamKeys,
    /// KEYS: an array of key names.
    KeyList,
    /// SCAN: `[cursor, [key, ...]]`.
    ScanPage,
    /// PUBSUB NUMSUB / SHARDNUMSUB: `[channel, count, channel, count, ...]`.
    NumSub,
    /// A Pub/Sub frame, RESP2 array or RESP3 push: a (un)subscribe
    /// confirmation `[kind, channel or pattern, count]`, a message
    /// `[message, channel, payload]` or `[pmessage, pattern, channel, payload]`.
    /// Other frames (a subscribed PING's `[pong, payload]`) pass untouched.
    PubSub,
}

/// Kinds of Pub/Sub frame whose channel (and pattern) names are namespaced.
const PUBSUB_KINDS: [&[u8]; 9] = [
    b"subscribe",
    b"unsubscribe",
    b"psubscribe",
    b"punsubscribe",
    b"ssubscribe",
    b"sunsubscribe",
    b"message",
    b"pmessage",
    b"smessage",
];

/// The kind of a Pub/Sub frame (`message`, `subscribe`, ...): the first
/// element of an array or push whose first element is a bulk string.
pub fn pubsub_kind(frame: &[u8]) -> Option<&[u8]> {
    let (_, n, body) = aggregate_header(frame).ok()??;
    if n == 0 || frame.get(body) != Some(&b'$') {
        return None;
    }
    let len = element_len(&frame[body..]).ok()?;
    let header = frame[body..].iter().position(|&b| b == b'\r')? + 2;
    frame.get(body + header..body + len - 2)
}

/// Whether a 3-element message frame is on Redis's `__redis__:invalidate`.
fn is_invalidate(reply: &[u8], body: usize) -> bool {
    let Ok(kind_len) = element_len(&reply[body..]) else { return false };
    let channel = &reply[body + kind_len..];
    channel.starts_with(b"$20\r\n__redis__:invalidate\r\n")
}

/// Messages arrive on their own; every other frame answers a command.
pub fn is_message(kind: &[u8]) -> bool {
    matches!(kind, b"message" | b"pmessage" | b"smessage")
}

/// Rewrites one complete reply, appending the client's view to `out`.
/// Keys that do not carry the namespace (which a correct backend never
/// returns) are passed unchanged rather than guessed at.
pub fn strip_reply(kind: ReplyKeys, reply: &[u8], ns: &Namespace, out: &mut BytesMut) -> Result<(), ReplyError> {
    match kind {
        ReplyKeys::None => out.extend_from_slice(reply),
        ReplyKeys::FirstElement => match aggregate_header(reply)? {
            Some((b'*', n, body)) if n >= 2 => {
                out.extend_from_slice(&reply[..body]);
                let key_len = strip_bulk(&reply[body..], ns, out)?;
                out.extend_from_slice(&reply[body + key_len..]);
            }
            _ => out.extend_from_slice(reply),
        },
        ReplyKeys::KeyList => strip_key_list(reply, ns, out)?,
        ReplyKeys::ScanPage => match aggregate_header(reply)? {
            Some((b'*', 2, body)) => {
                let cursor = element_len(&reply[body..])?;
                let keys_at = body + cursor;
                out.extend_from_slice(&reply[..keys_at]);
                strip_key_list(&reply[keys_at..], ns, out)?;
            }
            _ => out.extend_from_slice(reply),
        },
        ReplyKeys::NumSub => match aggregate_header(reply)? {
            Some((b'*', n, body)) => {
                out.extend_from_slice(&reply[..body]);
                let mut pos = body;
                for i in 0..n {
                    if i % 2 == 0 {
                        pos += strip_bulk(&reply[pos..], ns, out)?;
                    } else {
                        let len = element_len(&reply[pos..])?;
                        out.extend_from_slice(&reply[pos..pos + len]);
                        pos += len;
                    }
                }
                out.extend_from_slice(&reply[pos..]);
            }
            _ => out.extend_from_slice(reply),
        },
        ReplyKeys::PubSub => match (pubsub_kind(reply), aggregate_header(reply)?) {
            // Invalidations redirected to a subscriber (RESP2 client-side
            // caching): `[message, __redis__:invalidate, [key, ...]]`.
            (Some(b"message"), Some((_, 3, body))) if is_invalidate(reply, body) => {
                let kind_len = element_len(&reply[body..])?;
                let channel_len = element_len(&reply[body + kind_len..])?;
                let keys_at = body + kind_len + channel_len;
                out.extend_from_slice(&reply[..keys_at]);
                strip_key_list(&reply[keys_at..], ns, out)?;
            }
            // Client-side caching: `[invalidate, [key, ...]]` (or a null after a flush).
            (Some(b"invalidate"), Some((_, 2, body))) => {
                let kind_len = element_len(&reply[body..])?;
                let keys_at = body + kind_len;
                out.extend_from_slice(&reply[..keys_at]);
                strip_key_list(&reply[keys_at..], ns, out)?;
            }
            (Some(kind), Some((_, n, body))) if n >= 2 && PUBSUB_KINDS.contains(&kind) => {
                let names = if kind == b"pmessage" { 2 } else { 1 };
                let kind_len = element_len(&reply[body..])?;
                out.extend_from_slice(&reply[..body + kind_len]);
                let pos = body + kind_len + strip_all(&reply[body + kind_len..], names.min(n - 1), ns, out)?;
                out.extend_from_slice(&reply[pos..]);
            }
            _ => out.extend_from_slice(reply),
        },
        ReplyKeys::StreamKeys => match aggregate_header(reply)? {
            Some((kind @ (b'*' | b'%'), n, body)) => {
                out.extend_from_slice(&reply[..body]);
                let mut pos = body;
                for _ in 0..n {
                    if kind == b'*' {
                        // Each element is `*2 key entries`.
                        let (_, _, inner) = aggregate_header(&reply[pos..])?.ok_or(ReplyError::BadLength)?;
                        out.extend_from_slice(&reply[pos..pos + inner]);
                        pos += inner;
                    }
                    pos += strip_bulk(&reply[pos..], ns, out)?;
                    let entries = element_len(&reply[pos..])?;
                    out.extend_from_slice(&reply[pos..pos + entries]);
                    pos += entries;
                }
                out.extend_from_slice(&reply[pos..]);
            }
            _ => out.extend_from_slice(reply),
        },
    }
    Ok(())
}

/// EXEC's reply: element `i` is the reply of the `i`th queued command and is
/// stripped as `kinds[i]` says (a null or an error passes untouched).
pub fn strip_exec(kinds: &[ReplyKeys], reply: &[u8], ns: &Namespace, out: &mut BytesMut) -> Result<(), ReplyError> {
    match aggregate_header(reply)? {
        Some((b'*', n, body)) if n == kinds.len() => {
            out.extend_from_slice(&reply[..body]);
            let mut pos = body;
            for kind in kinds {
                let len = element_len(&reply[pos..])?;
                strip_reply(*kind, &reply[pos..pos + len], ns, out)?;
                pos += len;
            }
            out.extend_from_slice(&reply[pos..]);
        }
        _ => out.extend_from_slice(reply),
    }
    Ok(())
}

/// An array of key names (or anything else, copied as is) at the front of
/// `buf`, stripped, and the rest of `buf` after it copied.
fn strip_key_list(buf: &[u8], ns: &Namespace, out: &mut BytesMut) -> Result<(), ReplyError> {
    match aggregate_header(buf)? {
        Some((_, n, body)) => {
            out.extend_from_slice(&buf[..body]);
            let pos = strip_all(&buf[body..], n, ns, out)?;
            out.extend_from_slice(&buf[body + pos..]);
        }
        None => out.extend_from_slice(buf),
    }
    Ok(())
}

/// Strips `n` consecutive bulk strings; returns the bytes they took.
fn strip_all(buf: &[u8], n: usize, ns: &Namespace, out: &mut BytesMut) -> Result<usize, ReplyError> {
    let mut pos = 0;
    for _ in 0..n {
        pos += strip_bulk(&buf[pos..], ns, out)?;
    }
    Ok(pos)
}

/// `(type, count, header length)` of an aggregate at the front, or `None` for
/// anything else (null, error, scalar).
pub(crate) fn aggregate_header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, ReplyError> {
    let kind = *buf.first().ok_or(ReplyError::BadLength)?;
    if !matches!(kind, b'*' | b'%' | b'~' | b'>') {
        return Ok(None);
    }
    let end = buf.windows(2).position(|w| w == b"\r\n").ok_or(ReplyError::BadLength)?;
    let n = parse_i64(&buf[1..end]).ok_or(ReplyError::BadLength)?;
    Ok(usize::try_from(n).ok().map(|n| (kind, n, end + 2)))
}

pub(crate) fn element_len(buf: &[u8]) -> Result<usize, ReplyError> {
    reply_len(buf)?.ok_or(ReplyError::BadLength)
}

/// Copies the bulk string (or simple string) at the front of `buf` to `out`
/// without the namespace; returns how many bytes of `buf` it took.
fn strip_bulk(buf: &[u8], ns: &Namespace, out: &mut BytesMut) -> Result<usize, ReplyError> {
    let len = element_len(buf)?;
    // Anything but a non-null bulk string (a null, a simple string) is copied as is.
    if buf[0] != b'$' || buf.get(1) == Some(&b'-') {
        out.extend_from_slice(&buf[..len]);
        return Ok(len);
    }
    let header = buf.iter().position(|&b| b == b'\r').ok_or(ReplyError::BadLength)? + 2;
    let key = &buf[header..len - 2];
    match ns.strip(key) {
        Some(client_key) => {
            out.extend_from_slice(format!("${}\r\n", client_key.len()).as_bytes());
            out.extend_from_slice(client_key);
            out.extend_from_slice(b"\r\n");
        }
        None => out.extend_from_slice(&buf[..len]),
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(kind: ReplyKeys, reply: &[u8]) -> Vec<u8> {
        let ns = Namespace::new("t:").unwrap();
        let mut out = BytesMut::new();
        strip_reply(kind, reply, &ns, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn strips_pair_keys() {
        assert_eq!(
            strip(ReplyKeys::FirstElement, b"*2\r\n$3\r\nt:k\r\n*1\r\n$1\r\nv\r\n"),
            b"*2\r\n$1\r\nk\r\n*1\r\n$1\r\nv\r\n"
        );
        assert_eq!(strip(ReplyKeys::FirstElement, b"*-1\r\n"), b"*-1\r\n");
        assert_eq!(strip(ReplyKeys::FirstElement, b"_\r\n"), b"_\r\n");
        // Found by the fuzzer: a null where the key would be.
        assert_eq!(strip(ReplyKeys::FirstElement, b"*2\r\n$-1\r\n:1\r\n"), b"*2\r\n$-1\r\n:1\r\n");
        assert_eq!(strip(ReplyKeys::StreamKeys, b"*1\r\n*2\r\n$-1\r\n*0\r\n"), b"*1\r\n*2\r\n$-1\r\n*0\r\n");
    }

    #[test]
    fn strips_key_lists_and_scan_pages() {
        assert_eq!(strip(ReplyKeys::KeyList, b"*2\r\n$3\r\nt:a\r\n$4\r\nt:bc\r\n"), b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n");
        assert_eq!(strip(ReplyKeys::KeyList, b"*0\r\n"), b"*0\r\n");
        assert_eq!(
            strip(ReplyKeys::ScanPage, b"*2\r\n$2\r\n17\r\n*1\r\n$3\r\nt:a\r\n"),
            b"*2\r\n$2\r\n17\r\n*1\r\n$1\r\na\r\n"
        );
        assert_eq!(strip(ReplyKeys::ScanPage, b"-ERR invalid cursor\r\n"), b"-ERR invalid cursor\r\n");
    }

    #[test]
    fn strips_inside_exec_replies() {
        let ns = Namespace::new("t:").unwrap();
        let mut out = BytesMut::new();
        let reply = b"*3\r\n+OK\r\n*1\r\n$3\r\nt:a\r\n*2\r\n$3\r\nt:l\r\n*1\r\n$1\r\nx\r\n";
        strip_exec(&[ReplyKeys::None, ReplyKeys::KeyList, ReplyKeys::FirstElement], reply, &ns, &mut out).unwrap();
        assert_eq!(&out[..], b"*3\r\n+OK\r\n*1\r\n$1\r\na\r\n*2\r\n$1\r\nl\r\n*1\r\n$1\r\nx\r\n");
        // An aborted transaction: null.
        out.clear();
        strip_exec(&[ReplyKeys::KeyList], b"*-1\r\n", &ns, &mut out).unwrap();
        assert_eq!(&out[..], b"*-1\r\n");
    }

    #[test]
    fn strips_pubsub_frames_and_numsub() {
        assert_eq!(
            strip(ReplyKeys::PubSub, b"*3\r\n$9\r\nsubscribe\r\n$4\r\nt:ch\r\n:1\r\n"),
            b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
        );
        assert_eq!(
            strip(ReplyKeys::PubSub, b">4\r\n$8\r\npmessage\r\n$4\r\nt:c*\r\n$5\r\nt:cat\r\n$4\r\nt:hi\r\n"),
            b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$3\r\ncat\r\n$4\r\nt:hi\r\n"
        );
        // Unsubscribing from nothing: a null channel.
        assert_eq!(
            strip(ReplyKeys::PubSub, b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"),
            b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
        );
        // A subscribed PING's payload is the client's, not a channel.
        assert_eq!(
            strip(ReplyKeys::PubSub, b"*2\r\n$4\r\npong\r\n$3\r\nt:x\r\n"),
            b"*2\r\n$4\r\npong\r\n$3\r\nt:x\r\n"
        );
        assert_eq!(
            strip(ReplyKeys::NumSub, b"*4\r\n$3\r\nt:a\r\n:2\r\n$3\r\nt:b\r\n:0\r\n"),
            b"*4\r\n$1\r\na\r\n:2\r\n$1\r\nb\r\n:0\r\n"
        );
        assert_eq!(
            strip(ReplyKeys::PubSub, b">2\r\n$10\r\ninvalidate\r\n*2\r\n$3\r\nt:a\r\n$3\r\nt:b\r\n"),
            b">2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(strip(ReplyKeys::PubSub, b">2\r\n$10\r\ninvalidate\r\n_\r\n"), b">2\r\n$10\r\ninvalidate\r\n_\r\n");
        assert_eq!(
            strip(ReplyKeys::PubSub, b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$3\r\nt:k\r\n"),
            b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\nk\r\n"
        );
        assert_eq!(pubsub_kind(b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n"), Some(&b"message"[..]));
        assert_eq!(pubsub_kind(b":1\r\n"), None);
        assert!(is_message(b"smessage") && !is_message(b"subscribe"));
    }

    #[test]
    fn strips_stream_keys_in_both_protocols() {
        let entries = b"*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n";
        let mut resp2 = b"*2\r\n*2\r\n$4\r\nt:s1\r\n".to_vec();
        resp2.extend_from_slice(entries);
        resp2.extend_from_slice(b"*2\r\n$4\r\nt:s2\r\n");
        resp2.extend_from_slice(entries);
        let mut want = b"*2\r\n*2\r\n$2\r\ns1\r\n".to_vec();
        want.extend_from_slice(entries);
        want.extend_from_slice(b"*2\r\n$2\r\ns2\r\n");
        want.extend_from_slice(entries);
        assert_eq!(strip(ReplyKeys::StreamKeys, &resp2), want);

        let mut resp3 = b"%1\r\n$4\r\nt:s1\r\n".to_vec();
        resp3.extend_from_slice(entries);
        let mut want = b"%1\r\n$2\r\ns1\r\n".to_vec();
        want.extend_from_slice(entries);
        assert_eq!(strip(ReplyKeys::StreamKeys, &resp3), want);
        assert_eq!(strip(ReplyKeys::StreamKeys, b"*-1\r\n"), b"*-1\r\n");
    }
}
