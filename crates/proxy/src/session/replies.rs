//! A client's replies in request order: tenantry's own, and those a backend
//! owes for a batch. Ready replies move to the output queue in order.

use super::output::ReplyWindow;
use crate::backend::{follow_redirects, BackendError, BatchReply, Follow, NodeId};
use crate::out_queue::OutQueue;
use crate::telemetry::ErrorKind;
use crate::telemetry::{KeyspaceCounters, TenantMetrics};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use tenantry_protocol::hits::{self, Tally};
use tenantry_protocol::reply::reply_len;
use tenantry_protocol::strip::{strip_exec, strip_reply};
use tenantry_protocol::{Namespace, ReplyKeys};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// One entry of a client's reply queue.
pub enum Pending {
    /// Replies tenantry made itself, for `count` requests.
    Local { bytes: Bytes, count: usize },
    /// Replies a backend will send for a batch of `count` requests.
    Backend(BackendReplies),
}

/// What to do with one reply of a batch before the client sees it.
pub enum Fix {
    /// Strip the namespace from the key names it holds.
    Strip(ReplyKeys),
    /// EXEC's reply: strip each queued command's reply as it says.
    StripExec(Vec<ReplyKeys>),
    /// A command tenantry added (a default TTL): the client never sees its reply.
    Drop,
    /// A read whose reply counts as hits and misses of a keyspace.
    Tally(Tally, Arc<KeyspaceCounters>),
    /// A read of a hot key whose reply fills the near-cache; comes before
    /// the read's other fix (its tally), at the same index.
    Fill(Box<crate::near_cache::Fill>),
    /// DEL/UNLINK of a tenant with a memory quota: `:n` deleted keys free
    /// about `n` times the mean key size, counted at once rather than at the
    /// next measurement (so a full `noeviction` tenant gets its room back).
    Freed(Arc<crate::tenant::QuotaState>),
    /// The SADD marking a migrating tenant's write (the client never sees
    /// it); if it failed, the keys are marked again.
    Mark(Box<(Arc<crate::tenant::migration::Migration>, Vec<bytes::Bytes>)>),
}

/// A batch's fixes as (index in the batch, fix), in index order. Most
/// batches have none or one (a read's hit count), held without allocating.
#[derive(Default)]
pub struct Fixes {
    /// `None` only while `rest` is empty too.
    first: Option<(usize, Fix)>,
    rest: Vec<(usize, Fix)>,
}

impl Fixes {
    pub fn push(&mut self, at: usize, fix: Fix) {
        if self.first.is_none() {
            self.first = Some((at, fix));
        } else {
            self.rest.push((at, fix));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub fn iter(&self) -> impl Iterator<Item = &(usize, Fix)> {
        self.first.iter().chain(&self.rest)
    }
}

pub struct BackendReplies {
    pub rx: oneshot::Receiver<BatchReply>,
    /// Replies the backend owes, including `hidden` ones.
    pub count: usize,
    pub hidden: usize,
    pub fixes: Fixes,
    pub namespace: Namespace,
    /// The node it went to.
    pub node: Arc<NodeId>,
    pub metrics: Arc<TenantMetrics>,
    pub sent_at: Instant,
    /// Sampled commands' spans, ended (dropped) with the batch's replies.
    pub spans: Vec<tracing::Span>,
    /// A cluster batch: its MOVED/ASK replies are followed before use.
    pub follow: Option<Follow>,
    /// Bytes of the requests sent.
    pub sent_bytes: usize,
}

#[derive(Default)]
pub struct ReplyQueue {
    queue: VecDeque<Pending>,
    /// Beside each entry of `queue`: its replies are not sent (CLIENT REPLY).
    muted: VecDeque<bool>,
    /// Entries pushed now are muted.
    pub muting: bool,
    /// Requests whose replies are not yet in the output queue.
    pub in_flight: usize,
    /// Bytes of the requests sent for them.
    pub in_flight_bytes: usize,
    /// What the client's replies weigh, to bound what it has in flight.
    pub window: ReplyWindow,
}

impl ReplyQueue {
    pub fn push(&mut self, p: Pending) {
        if self.queue.capacity() == 0 {
            // Room for one: a client that waits for each reply never needs
            // more, and an idle one keeps this (a pipelining one grows it).
            self.queue.reserve_exact(1);
        }
        self.in_flight += match &p {
            Pending::Local { count, .. } => *count,
            Pending::Backend(b) => {
                self.in_flight_bytes += b.sent_bytes;
                b.count
            }
        };
        self.queue.push_back(p);
        self.muted.push_back(self.muting);
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The receiver the head waits on, if the head is a backend batch.
    pub fn head_rx(&mut self) -> Option<&mut oneshot::Receiver<BatchReply>> {
        match self.queue.front_mut() {
            Some(Pending::Backend(b)) => Some(&mut b.rx),
            _ => None,
        }
    }

    /// Moves every ready reply at the head to `out`, stopping at the first
    /// batch still waiting on its backend. `head_result` is the head's reply
    /// if it was just received by awaiting `head_rx`.
    pub fn drain_ready(&mut self, client_out: &mut OutQueue, mut head_result: Option<Result<BatchReply, ()>>) {
        // A muted entry's replies are fixed and counted like any, then
        // dropped; made only then (this runs several times per request).
        let mut sink: Option<OutQueue> = None;
        while let Some(front) = self.queue.front_mut() {
            let muted = self.muted.front() == Some(&true);
            let out = if muted { sink.get_or_insert_with(OutQueue::default) } else { &mut *client_out };
            match front {
                Pending::Local { bytes, count } => {
                    self.in_flight -= *count;
                    out.push(std::mem::take(bytes));
                }
                Pending::Backend(b) => {
                    let reply = match head_result.take() {
                        Some(r) => r,
                        None => match b.rx.try_recv() {
                            Ok(r) => Ok(r),
                            Err(oneshot::error::TryRecvError::Empty) => return,
                            Err(oneshot::error::TryRecvError::Closed) => Err(()),
                        },
                    };
                    if let Ok(Ok(bytes)) = &reply {
                        if b.follow.is_some() && tenantry_protocol::cluster::may_hold_redirect(bytes) {
                            // Wait again, for the batch with its redirections followed.
                            let follow = b.follow.take().expect("checked");
                            let (tx, rx) = oneshot::channel();
                            let bytes = bytes.clone();
                            tokio::spawn(async move {
                                let _ = tx.send(follow_redirects(follow, bytes).await);
                            });
                            b.rx = rx;
                            return;
                        }
                    }
                    if let (Ok(Err(_)) | Err(()), Some(f)) = (&reply, &b.follow) {
                        // A node went away: the map may have changed (failover).
                        f.cluster.refresh_soon();
                    }
                    self.in_flight -= b.count;
                    self.in_flight_bytes -= b.sent_bytes;
                    let visible = b.count - b.hidden;
                    let before = out.len();
                    match reply {
                        Ok(Ok(bytes)) => {
                            let seconds = b.sent_at.elapsed().as_secs_f64();
                            b.metrics.observe_latency(seconds, visible);
                            count_errors(&bytes, &b.metrics);
                            self.window.observe(bytes.len(), b.count);
                            if b.fixes.is_empty() {
                                out.push(bytes);
                            } else {
                                fix_batch(&bytes, b, out);
                            }
                        }
                        Ok(Err(e)) => {
                            b.metrics.error(ErrorKind::BackendUnavailable, visible as u64);
                            errors(out, &e, visible);
                        }
                        Err(()) => {
                            b.metrics.error(ErrorKind::BackendUnavailable, visible as u64);
                            errors(out, &b.node.lost(), visible);
                        }
                    }
                    if !muted {
                        b.metrics.bytes_out.inc_by((out.len() - before) as u64);
                    }
                    // The replies are here: sampled commands' spans end now.
                    b.spans.clear();
                }
            }
            self.queue.pop_front();
            self.muted.pop_front();
        }
    }
}

/// Counts the backend's error replies in a batch by their code (`ERR`,
/// `WRONGTYPE`, `OOM`, ...). Most batches have none: a byte search says so.
fn count_errors(bytes: &[u8], metrics: &TenantMetrics) {
    if tenantry_protocol::reply::maybe_error_starts(bytes).next().is_none() {
        return;
    }
    let mut pos = 0;
    while let Ok(Some(len)) = reply_len(&bytes[pos..]) {
        let reply = &bytes[pos..pos + len];
        if reply[0] == b'-' {
            let code = reply[1..].split(|&b| b == b' ' || b == b'\r').next().unwrap_or_default();
            metrics.error(ErrorKind::of_code(code), 1);
        }
        pos += len;
        if pos >= bytes.len() {
            break;
        }
    }
}

fn errors(out: &mut OutQueue, e: &BackendError, count: usize) {
    let line = format!("-ERR {e}\r\n");
    for _ in 0..count {
        out.extend(line.as_bytes());
    }
}

fn fix_batch(bytes: &[u8], b: &BackendReplies, out: &mut OutQueue) {
    let mut pos = 0;
    let mut fixes = b.fixes.iter().peekable();
    for i in 0..b.count {
        // The backend connection framed exactly `count` replies.
        let Ok(Some(len)) = reply_len(&bytes[pos..]) else {
            out.extend(&bytes[pos..]);
            return;
        };
        let reply = &bytes[pos..pos + len];
        while let Some((at, Fix::Fill(fill))) = fixes.peek() {
            if *at != i {
                break;
            }
            fill.land(reply);
            fixes.next();
        }
        match fixes.peek() {
            Some((at, Fix::Drop)) if *at == i => {
                fixes.next();
            }
            Some((at, Fix::Mark(mark))) if *at == i => {
                if reply.first() != Some(&b':') {
                    mark.0.remark(mark.1.clone());
                }
                fixes.next();
            }
            Some((at, Fix::Tally(t, counters))) if *at == i => {
                if let Some((hits, misses)) = hits::count(*t, reply) {
                    counters.hits.inc_by(hits);
                    counters.misses.inc_by(misses);
                }
                out.extend(reply);
                fixes.next();
            }
            Some((at, Fix::Freed(quota))) if *at == i => {
                if let Ok(n) = tenantry_protocol::answer::integer(reply) {
                    quota.freed_keys(&b.node.addr, n.max(0) as u64);
                }
                out.extend(reply);
                fixes.next();
            }
            Some((at, Fix::StripExec(kinds))) if *at == i => {
                let tail = out.tail();
                let mark = tail.len();
                if strip_exec(kinds, reply, &b.namespace, tail).is_err() {
                    tail.truncate(mark);
                    tail.extend_from_slice(reply);
                }
                out.commit(mark);
                fixes.next();
            }
            Some((at, Fix::Strip(kind))) if *at == i => {
                let tail = out.tail();
                let mark = tail.len();
                if strip_reply(*kind, reply, &b.namespace, tail).is_err() {
                    tail.truncate(mark);
                    tail.extend_from_slice(reply);
                }
                out.commit(mark);
                fixes.next();
            }
            _ => out.extend(reply),
        }
        pos += len;
    }
}

#[cfg(test)]
#[path = "replies_tests.rs"]
mod tests;
