//! Arbitrary backend bytes: the reply scanner, the reply strippers, the
//! cluster redirection and slot-map parsers, the answer reader of tenantry's
//! own calls, the split-reply merger and the keyspace-events rewriter never
//! panic, and a stripped, merged or rewritten reply is still one whole reply.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tenantry_protocol::answer;
use tenantry_protocol::cluster::{parse_cluster_slots, parse_redirect};
use tenantry_protocol::events::{self, Delivery, Flags};
use tenantry_protocol::merge::{merge, Merge};
use tenantry_protocol::reply::reply_len;
use tenantry_protocol::strip::strip_reply;
use tenantry_protocol::{Namespace, ReplyKeys};

fuzz_target!(|data: &[u8]| {
    let _ = parse_cluster_slots(data, "127.0.0.1");
    // tenantry's own calls read their answers whatever a backend sends.
    let _ = (answer::integers(data), answer::strings(data), answer::scan_page(data), answer::text(data));
    let Ok(Some(len)) = reply_len(data) else { return };
    let reply = &data[..len];
    let _ = parse_redirect(reply);
    let ns = Namespace::new("fz:").unwrap();
    for kind in [ReplyKeys::FirstElement, ReplyKeys::StreamKeys, ReplyKeys::KeyList, ReplyKeys::ScanPage] {
        let mut out = BytesMut::new();
        if strip_reply(kind, reply, &ns, &mut out).is_ok() {
            assert_eq!(reply_len(&out), Ok(Some(out.len())));
        }
    }
    for flags in [Flags::parse(b"KEA").unwrap(), Flags::parse(b"K$").unwrap()] {
        if let Delivery::Frame(out) = events::deliver(reply, &ns, || flags) {
            assert_eq!(reply_len(&out), Ok(Some(out.len())));
        }
    }
    let _ = events::backend_channel(reply, &ns);
    let parts = [Bytes::copy_from_slice(reply), Bytes::copy_from_slice(reply)];
    for how in [Merge::Concat, Merge::Sum, Merge::AllOk, Merge::First, Merge::Scan { node: 0, nodes: 2 }, Merge::Arrays { order: vec![(1, 0), (0, 1)] }] {
        let merged = merge(&how, &parts);
        assert_eq!(reply_len(&merged), Ok(Some(merged.len())));
    }
});
