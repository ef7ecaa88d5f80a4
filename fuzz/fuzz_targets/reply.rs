//! Arbitrary backend bytes: the reply scanner and the reply strippers never
//! panic, and a stripped reply is still one whole reply.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tenantry_protocol::reply::reply_len;
use tenantry_protocol::strip::strip_reply;
use tenantry_protocol::{Namespace, ReplyKeys};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(len)) = reply_len(data) else { return };
    let ns = Namespace::new("fz:").unwrap();
    for kind in [ReplyKeys::FirstOfPair, ReplyKeys::StreamKeys] {
        let mut out = BytesMut::new();
        if strip_reply(kind, &data[..len], &ns, &mut out).is_ok() {
            assert_eq!(reply_len(&out), Ok(Some(out.len())));
        }
    }
});
