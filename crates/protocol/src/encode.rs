//! Writing RESP: commands to backends and the replies tenantry makes itself.

use crate::namespace::Namespace;
use bytes::{BufMut, BytesMut};

/// The protocol a client speaks (chosen with HELLO); replies are encoded in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

impl Protocol {
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// `kind`, the number and CRLF in one copy: these lines are most of what a
/// small command's encoding writes.
fn put_len(out: &mut BytesMut, kind: u8, n: usize) {
    // Most lengths are one or two digits: a copy of a fixed size is inlined,
    // where one of a computed length is a call to memcpy.
    match n {
        0..=9 => out.extend_from_slice(&[kind, b'0' + n as u8, b'\r', b'\n']),
        10..=99 => out.extend_from_slice(&[kind, b'0' + (n / 10) as u8, b'0' + (n % 10) as u8, b'\r', b'\n']),
        _ => out.extend_from_slice(line(kind, n as i64).as_slice()),
    }
}

struct SmallBuf([u8; 24], usize);
impl SmallBuf {
    fn as_slice(&self) -> &[u8] {
        &self.0[self.1..]
    }
}

/// `kind`, `n` in decimal and CRLF, written from the end (19 digits and a
/// sign at most).
fn line(kind: u8, mut n: i64) -> SmallBuf {
    let mut buf = [0u8; 24];
    buf[22..].copy_from_slice(b"\r\n");
    let mut i = 22;
    let neg = n < 0;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10).unsigned_abs() as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    i -= 1;
    buf[i] = kind;
    SmallBuf(buf, i)
}

/// Encodes a command as a RESP array, prefixing the arguments at `keys`
/// (sorted argument indices) with the namespace.
pub fn command<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A], keys: &[usize], ns: &Namespace) {
    let extra: usize = args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>() + keys.len() * ns.len();
    out.reserve(extra + 16);
    put_len(out, b'*', args.len());
    let mut next_key = keys.iter().copied().peekable();
    for (i, arg) in args.iter().enumerate() {
        let arg = arg.as_ref();
        if next_key.peek() == Some(&i) {
            next_key.next();
            put_len(out, b'$', ns.len() + arg.len());
            out.extend_from_slice(ns.as_bytes());
        } else {
            put_len(out, b'$', arg.len());
        }
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Replies tenantry writes itself, in the client's protocol.
pub struct Reply<'a> {
    pub out: &'a mut BytesMut,
    pub proto: Protocol,
}

impl Reply<'_> {
    pub fn simple(&mut self, s: &str) {
        self.out.put_u8(b'+');
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// `msg` starts with the error code (`ERR`, `NOAUTH`, ...). Newlines are
    /// replaced by spaces so the error stays one line.
    pub fn error(&mut self, msg: &str) {
        self.out.put_u8(b'-');
        for b in msg.bytes() {
            self.out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn integer(&mut self, n: i64) {
        self.out.extend_from_slice(line(b':', n).as_slice());
    }

    pub fn bulk(&mut self, data: &[u8]) {
        put_len(self.out, b'$', data.len());
        self.out.extend_from_slice(data);
        self.out.extend_from_slice(b"\r\n");
    }

    /// Text for humans: a bulk string in RESP2, a verbatim string in RESP3 (as Redis answers INFO).
    pub fn text(&mut self, text: &str) {
        match self.proto {
            Protocol::Resp2 => self.bulk(text.as_bytes()),
            Protocol::Resp3 => {
                put_len(self.out, b'=', text.len() + 4);
                self.out.extend_from_slice(b"txt:");
                self.out.extend_from_slice(text.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }

    pub fn null(&mut self) {
        match self.proto {
            Protocol::Resp2 => self.out.extend_from_slice(b"$-1\r\n"),
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
        }
    }

    /// A null array: what EXEC answers when a watched key changed.
    pub fn null_array(&mut self) {
        match self.proto {
            Protocol::Resp2 => self.out.extend_from_slice(b"*-1\r\n"),
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
        }
    }

    pub fn array(&mut self, len: usize) {
        put_len(self.out, b'*', len);
    }

    /// A map header: a flat array of 2*len in RESP2, as Redis does.
    pub fn map(&mut self, len: usize) {
        match self.proto {
            Protocol::Resp2 => put_len(self.out, b'*', len * 2),
            Protocol::Resp3 => put_len(self.out, b'%', len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_prefixes_only_key_positions() {
        let ns = Namespace::new("t:").unwrap();
        let mut out = BytesMut::new();
        command(&mut out, &[&b"MSET"[..], b"a", b"1", b"b", b"22"], &[1, 3], &ns);
        assert_eq!(&out[..], &b"*5\r\n$4\r\nMSET\r\n$3\r\nt:a\r\n$1\r\n1\r\n$3\r\nt:b\r\n$2\r\n22\r\n"[..]);
    }

    #[test]
    fn integers_and_maps_follow_the_protocol() {
        let mut out = BytesMut::new();
        let mut r = Reply { out: &mut out, proto: Protocol::Resp3 };
        r.integer(-1230);
        r.integer(0);
        r.integer(i64::MIN);
        r.map(2);
        r.null();
        assert_eq!(&out[..], b":-1230\r\n:0\r\n:-9223372036854775808\r\n%2\r\n_\r\n");
        let mut out = BytesMut::new();
        let mut r = Reply { out: &mut out, proto: Protocol::Resp2 };
        r.map(2);
        r.null();
        r.error("ERR a\r\nb");
        assert_eq!(&out[..], b"*4\r\n$-1\r\n-ERR a  b\r\n");
    }
}
