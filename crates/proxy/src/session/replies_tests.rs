//! The reply queue without a socket or a backend: batches are answered (or
//! lost) through their channels, in any order, and the client must see one
//! reply per request, in request order.

use super::super::order_check::{run, Op};
use super::*;
use crate::telemetry::Families;
use proptest::prelude::*;
use tenantry_config::{BackendAddr, BackendName};

fn node() -> Arc<NodeId> {
    Arc::new(NodeId { backend: BackendName::new("b"), addr: BackendAddr::new("127.0.0.1:1") })
}

fn metrics() -> Arc<TenantMetrics> {
    Arc::new(TenantMetrics::new("t", Arc::new(Families::new()), 5))
}

/// A batch of `count` requests, `hidden` of them tenantry's own; the sender
/// answers it.
fn batch(count: usize, hidden: usize, fixes: Fixes) -> (Pending, oneshot::Sender<BatchReply>) {
    let (tx, rx) = oneshot::channel();
    let b = BackendReplies {
        rx,
        count,
        hidden,
        fixes,
        namespace: Namespace::new("t:").expect("valid"),
        node: node(),
        metrics: metrics(),
        sent_at: Instant::now(),
        spans: Vec::new(),
        follow: None,
        sent_bytes: 10 * count,
    };
    (Pending::Backend(b), tx)
}

fn local(bytes: &'static [u8], count: usize) -> Pending {
    Pending::Local { bytes: Bytes::from_static(bytes), count }
}

#[test]
fn local_replies_wait_behind_a_batch_still_owed() {
    let mut q = ReplyQueue::default();
    let mut out = OutQueue::default();
    let (b, tx) = batch(2, 0, Fixes::default());
    q.push(local(b"+OK\r\n", 1));
    q.push(b);
    q.push(local(b"+QUEUED\r\n", 1));
    assert_eq!(q.in_flight, 4);
    q.drain_ready(&mut out, None);
    assert_eq!(out.to_vec(), b"+OK\r\n", "the batch holds back what follows it");
    tx.send(Ok(Bytes::from_static(b":1\r\n:2\r\n"))).expect("queued");
    q.drain_ready(&mut out, None);
    assert_eq!(out.to_vec(), b"+OK\r\n:1\r\n:2\r\n+QUEUED\r\n");
    assert_eq!((q.in_flight, q.in_flight_bytes), (0, 0));
    assert!(q.is_empty());
}

#[test]
fn a_later_batch_answered_first_still_comes_second() {
    let mut q = ReplyQueue::default();
    let mut out = OutQueue::default();
    let (first, tx1) = batch(1, 0, Fixes::default());
    let (second, tx2) = batch(1, 0, Fixes::default());
    q.push(first);
    q.push(second);
    tx2.send(Ok(Bytes::from_static(b"$1\r\nb\r\n"))).expect("queued");
    q.drain_ready(&mut out, None);
    assert!(out.is_empty());
    tx1.send(Ok(Bytes::from_static(b"$1\r\na\r\n"))).expect("queued");
    q.drain_ready(&mut out, None);
    assert_eq!(out.to_vec(), b"$1\r\na\r\n$1\r\nb\r\n");
}

#[test]
fn a_lost_batch_answers_each_visible_request_with_an_error() {
    let mut q = ReplyQueue::default();
    let mut out = OutQueue::default();
    let (b, tx) = batch(3, 1, Fixes::default());
    q.push(b);
    q.push(local(b"+PONG\r\n", 1));
    drop(tx);
    q.drain_ready(&mut out, None);
    let lost = b"-ERR backend 'b' (127.0.0.1:1) connection lost before the reply\r\n";
    let expected = [&lost[..], lost, b"+PONG\r\n"].concat();
    assert_eq!(out.to_vec(), expected);
    let (b, tx) = batch(1, 0, Fixes::default());
    q.push(b);
    let down = BackendError::Unavailable {
        backend: BackendName::new("b"),
        addr: BackendAddr::new("127.0.0.1:1"),
        reason: "connect timed out".into(),
    };
    tx.send(Err(down)).expect("queued");
    q.drain_ready(&mut out, None);
    assert!(out.to_vec().ends_with(b"-ERR backend 'b' (127.0.0.1:1) is unavailable: connect timed out\r\n"));
}

#[test]
fn fixes_drop_hidden_replies_and_strip_keys() {
    let mut q = ReplyQueue::default();
    let mut out = OutQueue::default();
    let mut fixes = Fixes::default();
    // BLPOP's reply names its key; the PEXPIRE after SET is tenantry's.
    fixes.push(0, Fix::Strip(ReplyKeys::FirstElement));
    fixes.push(2, Fix::Drop);
    let (b, tx) = batch(3, 1, fixes);
    q.push(b);
    tx.send(Ok(Bytes::from_static(b"*2\r\n$5\r\nt:key\r\n$1\r\nv\r\n+OK\r\n:1\r\n"))).expect("queued");
    q.drain_ready(&mut out, None);
    assert_eq!(out.to_vec(), b"*2\r\n$3\r\nkey\r\n$1\r\nv\r\n+OK\r\n");
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Local),
        2 => (1usize..5, any::<bool>()).prop_map(|(requests, hidden)| Op::Batch { requests, hidden }),
        3 => (0usize..3).prop_map(|skip| Op::Answer { skip }),
        1 => (0usize..3).prop_map(|skip| Op::Lose { skip }),
        2 => Just(Op::Drain),
    ]
}

proptest! {
    #[test]
    fn every_request_gets_one_reply_in_order(ops in proptest::collection::vec(op(), 1..60)) {
        prop_assert_eq!(run(&ops), Ok(()));
    }
}

#[test]
fn bytes_decode_to_ops_as_the_fuzz_target_reads_them() {
    let ops = super::super::order_check::ops(&[0, 1, 4, 2, 4, 21]);
    let want = [
        Op::Local,
        Op::Batch { requests: 1, hidden: false },
        Op::Drain,
        Op::Answer { skip: 0 },
        Op::Drain,
        Op::Batch { requests: 1, hidden: true },
    ];
    assert_eq!(ops, want);
    assert_eq!(run(&ops), Ok(()));
}
