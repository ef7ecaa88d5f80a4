//! Rewrite, then strip: for arbitrary key names and namespaces, a command
//! encoded with its keys prefixed re-parses to the tenant's namespaced keys,
//! and every reply shape that carries key names (KEYS, SCAN, BLPOP-style,
//! XREAD in RESP2 and RESP3, PUBSUB NUMSUB, Pub/Sub messages, invalidations)
//! comes back to the client with exactly the names it used.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tenantry_protocol::strip::strip_reply;
use tenantry_protocol::{encode, Limits, Namespace, ReplyKeys, RequestParser};

fn number(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let (mut i, mut n) = (digits.len(), n);
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    header(out, b'$', b.len());
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    number(out, n);
}

/// Each reply shape, built as the backend sends it (names under `prefix`).
fn replies(keys: &[&[u8]], prefix: &[u8]) -> Vec<(ReplyKeys, Vec<u8>)> {
    let name = |k: &[u8]| [prefix, k].concat();
    let list = |out: &mut Vec<u8>| {
        header(out, b'*', keys.len());
        for k in keys {
            bulk(out, &name(k));
        }
    };
    let mut shapes = Vec::new();
    let mut r = Vec::new();
    list(&mut r);
    shapes.push((ReplyKeys::KeyList, r));
    let mut r = Vec::new();
    header(&mut r, b'*', 2);
    bulk(&mut r, b"17");
    list(&mut r);
    shapes.push((ReplyKeys::ScanPage, r));
    if let Some(first) = keys.first() {
        let mut r = Vec::new();
        header(&mut r, b'*', 2);
        bulk(&mut r, &name(first));
        bulk(&mut r, b"element");
        shapes.push((ReplyKeys::FirstElement, r));
    }
    for kind in [b'*', b'%'] {
        let mut r = Vec::new();
        header(&mut r, kind, keys.len());
        for k in keys {
            if kind == b'*' {
                header(&mut r, b'*', 2);
            }
            bulk(&mut r, &name(k));
            r.extend_from_slice(b"*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
        }
        shapes.push((ReplyKeys::StreamKeys, r));
    }
    let mut r = Vec::new();
    header(&mut r, b'*', keys.len() * 2);
    for k in keys {
        bulk(&mut r, &name(k));
        r.extend_from_slice(b":3\r\n");
    }
    shapes.push((ReplyKeys::NumSub, r));
    for push in [b'*', b'>'] {
        if let Some(first) = keys.first() {
            let mut r = Vec::new();
            header(&mut r, push, 3);
            bulk(&mut r, b"message");
            bulk(&mut r, &name(first));
            bulk(&mut r, b"payload");
            shapes.push((ReplyKeys::PubSub, r));
        }
        let mut r = Vec::new();
        header(&mut r, push, 2);
        bulk(&mut r, b"invalidate");
        list(&mut r);
        shapes.push((ReplyKeys::PubSub, r));
    }
    shapes
}

fuzz_target!(|data: &[u8]| {
    // The first line is the namespace (if it is a valid one), the rest are
    // keys separated by NUL.
    let (ns_text, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"fz:"[..], data),
    };
    let ns = std::str::from_utf8(ns_text).ok().and_then(|t| Namespace::new(t).ok());
    let Some(ns) = ns.or_else(|| Namespace::new("fz:").ok()) else { return };
    let keys: Vec<&[u8]> = rest.split(|&b| b == 0).take(16).collect();

    // Requests: DEL k1 k2 ... with every key rewritten, and nothing else.
    let mut args: Vec<&[u8]> = vec![b"DEL"];
    args.extend(&keys);
    let positions: Vec<usize> = (1..args.len()).collect();
    let mut wire = BytesMut::new();
    encode::command(&mut wire, &args, &positions, &ns);
    let back = RequestParser::new(Limits::default()).parse(&mut wire).expect("valid").expect("whole");
    assert!(wire.is_empty());
    assert_eq!(back.args[0].as_ref(), b"DEL");
    for (b, k) in back.args[1..].iter().zip(&keys) {
        assert_eq!(b.as_ref(), [ns.as_bytes(), k].concat());
        assert_eq!(ns.strip(b), Some(*k));
    }

    // Replies: what the backend says under the namespace, the client gets
    // under its own names, byte for byte.
    let want = replies(&keys, b"");
    for ((kind, namespaced), (_, plain)) in replies(&keys, ns.as_bytes()).into_iter().zip(want) {
        let mut out = BytesMut::new();
        strip_reply(kind, &namespaced, &ns, &mut out).expect("a whole reply");
        assert_eq!(&out[..], &plain[..], "{kind:?}");
    }
});
