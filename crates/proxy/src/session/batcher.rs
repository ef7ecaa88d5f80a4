//! Packs a client's consecutive forwarded requests into one batch per
//! backend node, and gathers its consecutive local replies; keeps the order
//! between them.

use super::replies::{BackendReplies, Fix, Pending, ReplyQueue};
use crate::backend::{Batch, NodePool};
use crate::runtime::TenantRt;
use crate::telemetry::KeyspaceCounters;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tenantry_protocol::encode;
use tenantry_protocol::hits::Tally;
use tenantry_protocol::ttl::TtlRewrite;
use tenantry_protocol::{Protocol, ReplyKeys};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Commands packed into one backend batch at most.
const MAX_BATCH: usize = 256;

pub struct Batcher {
    pub client: u64,
    local: BytesMut,
    local_count: usize,
    batch: Option<OpenBatch>,
}

struct OpenBatch {
    tenant: Arc<TenantRt>,
    node: Arc<NodePool>,
    proto: Protocol,
    bytes: BytesMut,
    count: usize,
    hidden: usize,
    fixes: Vec<(usize, Fix)>,
    spans: Vec<tracing::Span>,
}

/// A request to forward, as the session prepared it.
pub struct Forward<'a> {
    pub tenant: &'a Arc<TenantRt>,
    pub proto: Protocol,
    pub args: &'a [Bytes],
    pub keys: &'a [usize],
    pub reply: ReplyKeys,
    pub ttl: Option<TtlRewrite>,
    /// For reads: how the reply counts as hits and misses, and where.
    pub tally: Option<(Tally, KeyspaceCounters)>,
    /// A sampled command's span: it ends when the reply arrives.
    pub span: Option<tracing::Span>,
}

impl Batcher {
    pub fn new(client: u64) -> Self {
        Batcher { client, local: BytesMut::new(), local_count: 0, batch: None }
    }

    /// Requests handled but not yet in the reply queue.
    pub fn pending(&self) -> usize {
        self.local_count + self.batch.as_ref().map_or(0, |b| b.count - b.hidden)
    }

    pub fn local(&mut self, replies: &mut ReplyQueue, write: impl FnOnce(&mut BytesMut)) {
        // The open batch goes first: a later request must not overtake it.
        self.flush_batch(replies);
        write(&mut self.local);
        self.local_count += 1;
    }

    pub fn forward(&mut self, replies: &mut ReplyQueue, f: Forward<'_>) {
        self.flush_local(replies);
        let node = f.tenant.backend.route(f.args, f.keys);
        let same = self
            .batch
            .as_ref()
            .is_some_and(|b| Arc::ptr_eq(&b.tenant, f.tenant) && Arc::ptr_eq(&b.node, node) && b.proto == f.proto);
        if !same {
            self.flush_batch(replies);
            self.batch = Some(OpenBatch {
                tenant: f.tenant.clone(),
                node: node.clone(),
                proto: f.proto,
                bytes: BytesMut::new(),
                count: 0,
                hidden: 0,
                fixes: Vec::new(),
                spans: Vec::new(),
            });
        }
        let b = self.batch.as_mut().expect("opened above");
        let ns = &f.tenant.namespace;
        match &f.ttl {
            Some(rw) if !rw.replace.is_empty() || rw.rename.is_some() => {
                let mut args = f.args.to_vec();
                for (i, v) in &rw.replace {
                    args[*i] = v.clone();
                }
                if let Some(name) = rw.rename {
                    args[0] = Bytes::from_static(name.as_bytes());
                }
                encode::command(&mut b.bytes, &args, f.keys, ns);
            }
            _ => encode::command(&mut b.bytes, f.args, f.keys, ns),
        }
        if f.reply != ReplyKeys::None {
            b.fixes.push((b.count, Fix::Strip(f.reply)));
        }
        b.spans.extend(f.span);
        if let Some((t, counters)) = f.tally {
            b.fixes.push((b.count, Fix::Tally(t, counters)));
        }
        b.count += 1;
        // Default TTLs: `PEXPIRE key ms NX` after the write; the client never sees its reply.
        for (i, ms) in f.ttl.iter().flat_map(|rw| rw.default_for.iter()) {
            let ms = ms.to_string();
            encode::command(&mut b.bytes, &[&b"PEXPIRE"[..], &f.args[*i], ms.as_bytes(), b"NX"], &[1], ns);
            b.fixes.push((b.count, Fix::Drop));
            b.count += 1;
            b.hidden += 1;
        }
        if b.count >= MAX_BATCH {
            self.flush_batch(replies);
        }
    }

    pub fn flush(&mut self, replies: &mut ReplyQueue) {
        self.flush_local(replies);
        self.flush_batch(replies);
    }

    fn flush_local(&mut self, replies: &mut ReplyQueue) {
        if self.local_count > 0 {
            let bytes = self.local.split().freeze();
            replies.push(Pending::Local { bytes, count: self.local_count });
            self.local_count = 0;
        }
    }

    fn flush_batch(&mut self, replies: &mut ReplyQueue) {
        if let Some(b) = self.batch.take() {
            let (tx, rx) = oneshot::channel();
            let batch = Batch { bytes: b.bytes.freeze(), count: b.count, reply: tx };
            b.node.send(self.client, b.proto, batch);
            replies.push(Pending::Backend(BackendReplies {
                rx,
                count: b.count,
                hidden: b.hidden,
                fixes: b.fixes,
                namespace: b.tenant.namespace.clone(),
                node: b.node,
                metrics: b.tenant.metrics.clone(),
                sent_at: Instant::now(),
                spans: b.spans,
            }));
        }
    }
}
