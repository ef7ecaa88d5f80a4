//! Finding where one reply ends in a backend's byte stream (RESP2 and RESP3),
//! without decoding it. Replies that pass through unchanged are never parsed
//! further than this.

use crate::num::parse_i64;

/// Offsets in a run of replies where an error reply may start: 0 if the
/// first is one, and every `-` after a CRLF (a bulk value can hold those
/// too: a cheap test before framing, not a framing). Most batches hold none,
/// which one search says.
pub fn maybe_error_starts(replies: &[u8]) -> impl Iterator<Item = usize> + '_ {
    // Built once: `memmem::find` would build its searcher on every call.
    static AFTER_CRLF: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n-"));
    let first = (replies.first() == Some(&b'-')).then_some(0);
    first.into_iter().chain(AFTER_CRLF.find_iter(replies).map(|i| i + 2))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("invalid RESP type byte {0:#04x}")]
    BadType(u8),
    #[error("invalid RESP length")]
    BadLength,
    #[error("RESP header line too long")]
    LineTooLong,
    #[error("bulk string not terminated by CRLF")]
    Unterminated,
}

/// Longest header line a backend may send (simple strings and errors included).
const MAX_LINE: usize = 1 << 20;

/// Scans one reply at the front of a buffer, keeping its place between calls
/// so a reply arriving in many reads is scanned once. Iterative, so nesting
/// depth cannot overflow the stack.
#[derive(Debug, Default, Clone)]
pub struct ReplyScanner {
    pos: usize,
    /// Elements still to read before the reply is complete.
    pending: u64,
}

impl ReplyScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the length of the complete reply at the front of `buf`, or
    /// `None` if more bytes are needed (call again with the same buffer, grown).
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ReplyError> {
        if self.pending == 0 {
            self.pos = 0;
            self.pending = 1;
        }
        while self.pending > 0 {
            let pos = self.pos;
            let Some(&kind) = buf.get(pos) else {
                return Ok(None);
            };
            let Some(end) = line_end(buf, pos + 1)? else {
                return Ok(None);
            };
            let header = &buf[pos + 1..end];
            let mut next = end + 2;
            let mut add: u64 = 0;
            match kind {
                b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {}
                b'$' | b'!' | b'=' => {
                    let len = parse_i64(header).ok_or(ReplyError::BadLength)?;
                    if len >= 0 {
                        let stop = next + len as usize;
                        if buf.len() < stop + 2 {
                            return Ok(None);
                        }
                        if &buf[stop..stop + 2] != b"\r\n" {
                            return Err(ReplyError::Unterminated);
                        }
                        next = stop + 2;
                    } else if len != -1 || kind != b'$' {
                        return Err(ReplyError::BadLength);
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = parse_i64(header).ok_or(ReplyError::BadLength)?;
                    if n >= 0 {
                        let per = if matches!(kind, b'%' | b'|') { 2 } else { 1 };
                        add = (n as u64).checked_mul(per).ok_or(ReplyError::BadLength)?;
                        // An attribute precedes the reply it annotates.
                        if kind == b'|' {
                            add += 1;
                        }
                    } else if n != -1 || kind != b'*' {
                        return Err(ReplyError::BadLength);
                    }
                }
                other => return Err(ReplyError::BadType(other)),
            }
            self.pending = (self.pending - 1).checked_add(add).ok_or(ReplyError::BadLength)?;
            self.pos = next;
        }
        Ok(Some(self.pos))
    }
}

/// Length of the complete reply at the front of `buf`, if it is all there.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, ReplyError> {
    ReplyScanner::new().scan(buf)
}

/// Cuts back-to-back complete frames (replies, or the commands tenantry
/// encoded) into one `Bytes` each; `None` if the buffer does not end on a
/// frame boundary.
pub fn split_frames(buf: &bytes::Bytes) -> Option<Vec<bytes::Bytes>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let len = reply_len(&buf[pos..]).ok()??;
        out.push(buf.slice(pos..pos + len));
        pos += len;
    }
    Some(out)
}

fn line_end(buf: &[u8], from: usize) -> Result<Option<usize>, ReplyError> {
    let window = &buf[from.min(buf.len())..];
    match window.iter().take(MAX_LINE).position(|&b| b == b'\r') {
        Some(i) => match window.get(i + 1) {
            Some(b'\n') => Ok(Some(from + i)),
            Some(_) => Err(ReplyError::BadLength),
            None => Ok(None),
        },
        None if window.len() >= MAX_LINE => Err(ReplyError::LineTooLong),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_starts_are_found_where_replies_may_begin() {
        let starts = |b: &[u8]| maybe_error_starts(b).collect::<Vec<_>>();
        assert_eq!(starts(b"+OK\r\n:1\r\n"), Vec::<usize>::new());
        assert_eq!(starts(b"-ERR x\r\n+OK\r\n-MOVED 1 a:1\r\n"), vec![0, 13]);
        assert_eq!(starts(b"$-1\r\n"), Vec::<usize>::new());
    }

    #[test]
    fn finds_ends_of_resp2_and_resp3_replies() {
        let cases: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR x\r\n",
            b":-5\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"$3\r\na\r\n\r\n",
            b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
            b"%1\r\n+k\r\n*0\r\n",
            b"|1\r\n+key\r\n+val\r\n:7\r\n",
            b"_\r\n",
            b",1.5\r\n",
            b"#t\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"~2\r\n(123\r\n!1\r\nx\r\n",
        ];
        for case in cases {
            let mut buf = case.to_vec();
            buf.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(reply_len(&buf), Ok(Some(case.len())), "{:?}", String::from_utf8_lossy(case));
            for cut in 0..case.len() {
                assert_eq!(reply_len(&case[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn resumes_where_it_stopped() {
        let reply = b"*3\r\n$2\r\nab\r\n:1\r\n$1\r\nc\r\n";
        let mut s = ReplyScanner::new();
        for cut in 1..reply.len() {
            assert_eq!(s.scan(&reply[..cut]), Ok(None));
        }
        assert_eq!(s.scan(reply), Ok(Some(reply.len())));
        assert_eq!(s.scan(b":2\r\n"), Ok(Some(4)));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(reply_len(b"?x\r\n"), Err(ReplyError::BadType(b'?')));
        assert_eq!(reply_len(b"$2\r\nabc\r\n"), Err(ReplyError::Unterminated));
        assert_eq!(reply_len(b"*-2\r\n"), Err(ReplyError::BadLength));
    }
}
