//! A model client for the reply queue: requests answered by tenantry (local
//! replies) and by backends (batches answered, lost, or answered with
//! hidden replies of tenantry's own, in any order), drained at any time.
//! `run` checks what the client reads: exactly one reply per request, in
//! request order, never a reply ahead of one still owed. The property test
//! and the `reply_order` fuzz target drive it.

use super::replies::{BackendReplies, Fix, Fixes, Pending, ReplyQueue};
use crate::backend::{BatchReply, NodeId};
use crate::out_queue::OutQueue;
use crate::telemetry::{Families, TenantMetrics};
use bytes::Bytes;
use std::sync::{Arc, LazyLock};
use tenantry_config::{BackendAddr, BackendName};
use tenantry_protocol::Namespace;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// What happens to the queue next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A reply tenantry makes itself, for one request.
    Local,
    /// A batch of this many requests (1 to 4); `hidden`: one more command
    /// of tenantry's own after them (a default TTL), whose reply the client
    /// never sees.
    Batch {
        requests: usize,
        hidden: bool,
    },
    /// The oldest unanswered batch but `skip` gets its replies.
    Answer {
        skip: usize,
    },
    /// The oldest unanswered batch but `skip` loses its connection.
    Lose {
        skip: usize,
    },
    Drain,
}

/// What the client saw that it should not have.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(String);

/// Ops from arbitrary bytes, one per byte.
pub fn ops(data: &[u8]) -> Vec<Op> {
    data.iter()
        .map(|&b| match b % 5 {
            0 => Op::Local,
            1 => Op::Batch { requests: 1 + usize::from(b / 5 % 4), hidden: b / 20 % 2 == 1 },
            2 => Op::Answer { skip: usize::from(b / 5 % 3) },
            3 => Op::Lose { skip: usize::from(b / 5 % 3) },
            _ => Op::Drain,
        })
        .collect()
}

const LOST: &[u8] = b"-ERR backend 'b' (127.0.0.1:1) connection lost before the reply\r\n";

/// Runs the ops, then answers what is still owed and drains; `Err` says
/// what the client saw that it should not have.
pub fn run(ops: &[Op]) -> Result<(), Violation> {
    // Made once: a metrics registry costs more than a run.
    static METRICS: LazyLock<Arc<TenantMetrics>> =
        LazyLock::new(|| Arc::new(TenantMetrics::new("t", Arc::new(Families::new()), 5)));
    let node = Arc::new(NodeId { backend: BackendName::new("b"), addr: BackendAddr::new("127.0.0.1:1") });
    let metrics = METRICS.clone();
    let namespace = Namespace::new("t:").expect("valid");
    let mut q = ReplyQueue::default();
    // Unanswered batches: the sender, the ids of their requests, and
    // whether a hidden reply follows them.
    let mut owed: Vec<(oneshot::Sender<BatchReply>, Vec<usize>, bool)> = Vec::new();
    // Each request: whether its batch was lost.
    let mut requests: Vec<bool> = Vec::new();
    // The first request whose reply the client has not read.
    let mut next = 0;
    let answer = |(tx, ids, hidden): (oneshot::Sender<BatchReply>, Vec<usize>, bool)| {
        let mut replies: String = ids.iter().map(|i| format!(":{i}\r\n")).collect();
        if hidden {
            replies.push_str("+HIDDEN\r\n");
        }
        let _ = tx.send(Ok(Bytes::from(replies)));
    };
    for op in ops {
        match *op {
            Op::Local => {
                q.push(Pending::Local { bytes: Bytes::from(format!(":{}\r\n", requests.len())), count: 1 });
                requests.push(false);
            }
            Op::Batch { requests: n, hidden } => {
                let ids: Vec<usize> = (requests.len()..requests.len() + n).collect();
                requests.extend(std::iter::repeat_n(false, n));
                let (tx, rx) = oneshot::channel();
                let mut fixes = Fixes::default();
                if hidden {
                    fixes.push(n, Fix::Drop);
                }
                q.push(Pending::Backend(BackendReplies {
                    rx,
                    count: n + usize::from(hidden),
                    hidden: usize::from(hidden),
                    fixes,
                    namespace: namespace.clone(),
                    node: node.clone(),
                    metrics: metrics.clone(),
                    sent_at: Instant::now(),
                    spans: Vec::new(),
                    follow: None,
                    sent_bytes: 10 * n,
                }));
                owed.push((tx, ids, hidden));
            }
            Op::Answer { skip } if skip < owed.len() => answer(owed.remove(skip)),
            Op::Lose { skip } if skip < owed.len() => {
                let (tx, ids, _) = owed.remove(skip);
                drop(tx);
                for i in ids {
                    requests[i] = true;
                }
            }
            Op::Answer { .. } | Op::Lose { .. } => {}
            Op::Drain => read(&mut q, &requests, &mut next).map_err(|e| Violation(format!("after {op:?}: {e}")))?,
        }
    }
    for b in owed.drain(..) {
        answer(b);
    }
    read(&mut q, &requests, &mut next)?;
    if next != requests.len() {
        return Err(Violation(format!("{} of {} requests never answered", requests.len() - next, requests.len())));
    }
    if (q.in_flight, q.in_flight_bytes) != (0, 0) || !q.is_empty() {
        return Err(Violation(format!(
            "{} requests ({} bytes) still counted in flight",
            q.in_flight, q.in_flight_bytes
        )));
    }
    Ok(())
}

/// Drains what is ready and checks it: the replies of requests `next`,
/// `next + 1`, ... in order, each whole.
fn read(q: &mut ReplyQueue, lost: &[bool], next: &mut usize) -> Result<(), Violation> {
    let mut out = OutQueue::default();
    q.drain_ready(&mut out, None);
    let new = out.to_vec();
    let mut at = 0;
    while at < new.len() {
        let Some(&was_lost) = lost.get(*next) else { return Err(Violation("a reply for no request".into())) };
        let want = reply(*next, was_lost);
        if !new[at..].starts_with(&want) {
            return Err(Violation(format!("request {} got something else than its reply", *next)));
        }
        at += want.len();
        *next += 1;
    }
    Ok(())
}

/// Request `i`'s reply: `:i`, or the lost-connection error.
fn reply(i: usize, lost: bool) -> Vec<u8> {
    if lost {
        LOST.to_vec()
    } else {
        format!(":{i}\r\n").into_bytes()
    }
}
