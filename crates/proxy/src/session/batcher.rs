//! Packs a client's consecutive forwarded requests into one batch per
//! backend node, and gathers its consecutive local replies; keeps the order
//! between them.

use super::replies::{BackendReplies, Fix, Fixes, Pending, ReplyQueue};
use crate::backend::{Batch, BatchReply, Boarding, Cluster, ConnHandle, Flights, Follow, NodePool, Shares};
use crate::bufpool;
use crate::telemetry::KeyspaceCounters;
use crate::tenant::migration::WriteMark;
use crate::tenant::TenantRt;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tenantry_protocol::encode;
use tenantry_protocol::hits::Tally;
use tenantry_protocol::ttl::TtlRewrite;
use tenantry_protocol::{Namespace, Protocol, ReplyKeys};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Commands packed into one backend batch at most.
const MAX_BATCH: usize = 256;
/// A client's encoding buffer is renewed (or reclaimed, once the backend
/// connection has written the batches split off it) in pieces of this size
/// when less than `SCRATCH_LOW` of it is left. Small, because every client
/// that sent at once holds one until its batch is written.
const SCRATCH: usize = 1024;
const SCRATCH_LOW: usize = 128;

pub struct Batcher {
    pub client: u64,
    /// What the open batch is encoded into: a batch is split off it, so
    /// consecutive batches share one allocation instead of one each.
    scratch: BytesMut,
    local: BytesMut,
    local_count: usize,
    batch: Option<OpenBatch>,
    /// Set while the client has WATCHed: its batches go to its own connection.
    pub pinned: Option<Pinned>,
}

/// The client's own backend connection, and the node it is to.
pub struct Pinned {
    pub node: Arc<NodePool>,
    pub conn: ConnHandle,
}

struct OpenBatch {
    tenant: Arc<TenantRt>,
    node: Arc<NodePool>,
    /// A cluster's batch, whose MOVED/ASK replies are followed.
    follow: Option<Arc<Cluster>>,
    /// It opens with a transaction, followed as a whole.
    transaction: bool,
    proto: Protocol,
    bytes: BytesMut,
    count: usize,
    hidden: usize,
    fixes: Fixes,
    spans: Vec<tracing::Span>,
    /// Its reads that identical reads of others wait for.
    shares: Shares,
    /// A transaction's answers of tenantry's own, spliced into EXEC's reply.
    answers: Option<Answers>,
    /// Its writes of a migrating tenant.
    mark: Option<WriteMark>,
}

/// Answers to splice into EXEC's reply, and the replies before it.
struct Answers {
    skip: usize,
    answers: Vec<(usize, super::transaction::Answer)>,
}

/// A read that may share an identical read's reply: the tenant's flights,
/// and the newest flight the client may not join (see `coalesce.rs`).
pub struct Share<'a> {
    pub flights: &'a Arc<Flights>,
    pub floor: u64,
}

/// A request to forward, as the session prepared it.
pub struct Forward<'a> {
    pub tenant: &'a Arc<TenantRt>,
    /// Where the router placed it.
    pub node: Arc<NodePool>,
    pub proto: Protocol,
    pub args: &'a [Bytes],
    pub keys: &'a [usize],
    pub reply: ReplyKeys,
    pub ttl: Option<TtlRewrite>,
    /// For reads: how the reply counts as hits and misses, and where.
    pub tally: Option<(Tally, Arc<KeyspaceCounters>)>,
    /// A DEL/UNLINK whose reply frees quota (tenants with a memory quota).
    pub freed: Option<Arc<crate::tenant::QuotaState>>,
    /// A sampled command's span: it ends when the reply arrives.
    pub span: Option<tracing::Span>,
    /// A read that may share the reply of an identical one in flight.
    pub share: Option<Share<'a>>,
    /// A read of a hot key whose reply is to fill the near-cache.
    pub fill: Option<crate::near_cache::Fill>,
    /// A write of a migrating tenant, to mark once its reply is read.
    pub mark: Option<WriteMark>,
}

/// A command queued between MULTI and EXEC, checked and rewritten.
pub struct Queued {
    pub args: tenantry_protocol::Args,
    pub keys: Vec<usize>,
    pub ttl: Option<TtlRewrite>,
    /// Key names in its reply, which comes back inside EXEC's.
    pub reply: ReplyKeys,
    /// A command tenantry answers itself (INFO, CONFIG GET): queued as a
    /// PING whose reply its answer replaces (`transaction.rs`).
    pub answer: Option<(tenantry_protocol::ConnCommand, tenantry_protocol::Args)>,
}

/// A transaction being queued by a client.
pub struct Transaction {
    pub tenant: Arc<TenantRt>,
    /// Where its keys live (a cluster slot): all must live in one place.
    pub place: Option<crate::backend::Place>,
    pub proto: Protocol,
    pub queued: Vec<Queued>,
    /// A queued command was refused: EXEC answers EXECABORT.
    pub dirty: bool,
}

/// Encodes a command with its keys prefixed and its TTL rewrite applied.
fn encode_rewritten(out: &mut BytesMut, args: &[Bytes], keys: &[usize], ns: &Namespace, ttl: Option<&TtlRewrite>) {
    match ttl {
        Some(rw) if !rw.replace.is_empty() || rw.rename.is_some() => {
            let mut args = args.to_vec();
            for (i, v) in &rw.replace {
                args[*i] = v.clone();
            }
            if let Some(name) = rw.rename {
                args[0] = Bytes::from_static(name.as_bytes());
            }
            encode::command(out, &args, keys, ns);
        }
        _ => encode::command(out, args, keys, ns),
    }
}

impl OpenBatch {
    /// A migrating tenant's write just encoded: its mark goes right after
    /// it (the client never sees the SADD's reply), and the batch carries it.
    fn take_mark(&mut self, mut mark: WriteMark) {
        if !mark.keys().is_empty() {
            let args = mark.sadd(&self.node);
            encode::command(&mut self.bytes, &args, &[], &self.tenant.namespace);
            let fix = Fix::Mark(Box::new((mark.job().clone(), mark.take_keys())));
            self.fixes.push(self.count, fix);
            self.count += 1;
            self.hidden += 1;
        }
        match &mut self.mark {
            Some(m) => m.absorb(mark),
            None => self.mark = Some(mark),
        }
    }

    /// Default TTLs: `PEXPIRE key ms NX` after the write; the client never sees its reply.
    fn default_ttls(&mut self, args: &[Bytes], rw: &TtlRewrite, ns: &Namespace) {
        for (i, ms) in &rw.default_for {
            let ms = ms.to_string();
            encode::command(&mut self.bytes, &[&b"PEXPIRE"[..], &args[*i], ms.as_bytes(), b"NX"], &[1], ns);
            self.fixes.push(self.count, Fix::Drop);
            self.count += 1;
            self.hidden += 1;
        }
    }
}

/// The batch's reply with tenantry's answers in EXEC's, once the
/// transaction has run (its redirections followed first).
fn splice_answers(
    rx: oneshot::Receiver<BatchReply>,
    follow: Option<Follow>,
    a: Answers,
) -> oneshot::Receiver<BatchReply> {
    let (tx, spliced) = oneshot::channel();
    tokio::spawn(async move {
        let Ok(reply) = rx.await else { return };
        let reply = match (reply, follow) {
            (Ok(bytes), Some(f)) if tenantry_protocol::cluster::may_hold_redirect(&bytes) => {
                crate::backend::follow_redirects(f, bytes).await
            }
            (reply, _) => reply,
        };
        let reply = match reply {
            Ok(bytes) => {
                let mut answers = Vec::with_capacity(a.answers.len());
                for (i, answer) in a.answers {
                    answers.push((i, answer.await));
                }
                Ok(super::transaction::splice_exec(&bytes, a.skip, &answers).unwrap_or(bytes))
            }
            Err(e) => Err(e),
        };
        let _ = tx.send(reply);
    });
    spliced
}

impl Batcher {
    pub fn new(client: u64) -> Self {
        Batcher { client, scratch: BytesMut::new(), local: BytesMut::new(), local_count: 0, batch: None, pinned: None }
    }

    /// Requests handled but not yet in the reply queue.
    pub fn pending(&self) -> usize {
        self.local_count + self.batch.as_ref().map_or(0, |b| b.count - b.hidden)
    }

    /// Bytes of the requests in the open batch.
    pub fn pending_bytes(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.bytes.len())
    }

    pub fn local(&mut self, replies: &mut ReplyQueue, write: impl FnOnce(&mut BytesMut)) {
        // The open batch goes first: a later request must not overtake it.
        self.flush_batch(replies);
        write(&mut self.local);
        self.local_count += 1;
    }

    pub fn forward(&mut self, replies: &mut ReplyQueue, f: Forward<'_>) {
        self.flush_local(replies);
        let client = self.client;
        let b = self.open(replies, f.tenant, &f.node, f.proto);
        if b.count == 0 {
            b.follow = f.tenant.backend.cluster().cloned();
        }
        let ns = &f.tenant.namespace;
        let start = b.bytes.len();
        encode_rewritten(&mut b.bytes, f.args, f.keys, ns, f.ttl.as_ref());
        if let Some(share) = &f.share {
            match share.flights.board(f.proto, &b.bytes[start..], share.floor) {
                Boarding::Leads(leader) => {
                    let leader = match &b.follow {
                        Some(cluster) => leader.on_cluster(cluster.clone(), client),
                        None => leader,
                    };
                    b.shares.push(b.count, leader)
                }
                Boarding::Alone => {}
                Boarding::Joined(rx) => {
                    // On a cluster it follows its own MOVED/ASK, so it keeps its request.
                    let request = b.follow.is_some().then(|| Bytes::copy_from_slice(&b.bytes[start..]));
                    b.bytes.truncate(start);
                    return self.joined(replies, f, rx, request);
                }
            }
        }
        if let Some(fill) = f.fill {
            b.fixes.push(b.count, Fix::Fill(Box::new(fill)));
        }
        if f.reply != ReplyKeys::None {
            b.fixes.push(b.count, Fix::Strip(f.reply));
        }
        b.spans.extend(f.span);
        if let Some((t, counters)) = f.tally {
            b.fixes.push(b.count, Fix::Tally(t, counters));
        }
        if let Some(quota) = f.freed {
            b.fixes.push(b.count, Fix::Freed(quota));
        }
        b.count += 1;
        if let Some(rw) = &f.ttl {
            b.default_ttls(f.args, rw, ns);
        }
        if let Some(mark) = f.mark {
            b.take_mark(mark);
        }
        if b.count >= MAX_BATCH {
            self.flush_batch(replies);
        }
    }

    /// A read that waits for an identical read's reply: it takes its place
    /// in the reply queue like a batch of one, fixed (stripped, counted) as
    /// its own.
    fn joined(
        &mut self,
        replies: &mut ReplyQueue,
        f: Forward<'_>,
        rx: oneshot::Receiver<BatchReply>,
        request: Option<Bytes>,
    ) {
        self.flush(replies);
        let mut fixes = Fixes::default();
        if let Some(fill) = f.fill {
            fixes.push(0, Fix::Fill(Box::new(fill)));
        }
        if f.reply != ReplyKeys::None {
            fixes.push(0, Fix::Strip(f.reply));
        }
        if let Some((t, counters)) = f.tally {
            fixes.push(0, Fix::Tally(t, counters));
        }
        let follow = f.tenant.backend.cluster().zip(request).map(|(cluster, request)| Follow {
            cluster: cluster.clone(),
            client: self.client,
            proto: f.proto,
            request,
            transaction: false,
        });
        f.tenant.metrics.coalesced.inc();
        replies.push(Pending::Backend(BackendReplies {
            rx,
            count: 1,
            hidden: 0,
            fixes,
            namespace: f.tenant.namespace.clone(),
            node: f.node.id().clone(),
            metrics: f.tenant.metrics.clone(),
            sent_at: Instant::now(),
            spans: f.span.into_iter().collect(),
            follow,
            sent_bytes: 0,
        }));
    }

    /// A command tenantry sends for its own reasons: the client never sees its reply.
    pub fn hidden(&mut self, replies: &mut ReplyQueue, tenant: &Arc<TenantRt>, proto: Protocol, args: &[&[u8]]) {
        self.flush_local(replies);
        let node = match &self.pinned {
            Some(p) => p.node.clone(),
            None => tenant.backend.any_node(),
        };
        let b = self.open(replies, tenant, &node, proto);
        encode::command(&mut b.bytes, args, &[], &tenant.namespace);
        b.fixes.push(b.count, Fix::Drop);
        b.count += 1;
        b.hidden += 1;
    }

    /// MULTI, the queued commands and EXEC, as one batch: a batch is written
    /// whole on one connection, so no other client's command can land inside
    /// the transaction. The client already has its +OK and +QUEUED replies;
    /// only EXEC's reply is passed on. Default TTLs follow EXEC.
    /// `mark`: its writes, if the tenant is migrating.
    pub fn transaction(
        &mut self,
        replies: &mut ReplyQueue,
        tx: Transaction,
        answers: Vec<(usize, super::transaction::Answer)>,
        mark: Option<WriteMark>,
    ) {
        self.flush(replies);
        // Followed as a whole: if its slot moved, it runs again where it went.
        let node = match tx.tenant.backend.node_at(tx.place, None) {
            Ok(node) => node,
            Err(e) => {
                let e = crate::error::Error::from(e).resp();
                return self.local(replies, |out| encode::Reply { out, proto: tx.proto }.error(&e));
            }
        };
        let ns = tx.tenant.namespace.clone();
        let b = self.open(replies, &tx.tenant, &node, tx.proto);
        b.follow = tx.tenant.backend.cluster().cloned();
        // The batch is new (flushed above): the transaction opens it.
        b.transaction = true;
        encode::command(&mut b.bytes, &[&b"MULTI"[..]], &[], &ns);
        for q in &tx.queued {
            encode_rewritten(&mut b.bytes, &q.args, &q.keys, &ns, q.ttl.as_ref());
        }
        encode::command(&mut b.bytes, &[&b"EXEC"[..]], &[], &ns);
        for i in 0..=tx.queued.len() {
            b.fixes.push(i, Fix::Drop);
        }
        let kinds: Vec<ReplyKeys> = tx.queued.iter().map(|q| q.reply).collect();
        if kinds.iter().any(|k| *k != ReplyKeys::None) {
            b.fixes.push(tx.queued.len() + 1, Fix::StripExec(kinds));
        }
        b.count += tx.queued.len() + 2;
        b.hidden += tx.queued.len() + 1;
        if !answers.is_empty() {
            b.answers = Some(Answers { skip: tx.queued.len() + 1, answers });
        }
        for q in &tx.queued {
            if let Some(rw) = &q.ttl {
                b.default_ttls(&q.args, rw, &ns);
            }
        }
        if let Some(mark) = mark {
            b.take_mark(mark);
        }
        self.flush_batch(replies);
    }

    /// A reply that comes from elsewhere than the shared connections (FLUSHDB,
    /// DBSIZE, a blocking command): it takes its place in the reply queue like
    /// a backend batch of one, with `strip` applied to it.
    pub fn deferred(
        &mut self,
        replies: &mut ReplyQueue,
        tenant: &Arc<TenantRt>,
        rx: oneshot::Receiver<crate::backend::BatchReply>,
        strip: ReplyKeys,
    ) {
        self.flush(replies);
        let mut fixes = Fixes::default();
        if strip != ReplyKeys::None {
            fixes.push(0, Fix::Strip(strip));
        }
        replies.push(Pending::Backend(BackendReplies {
            rx,
            count: 1,
            hidden: 0,
            fixes,
            namespace: tenant.namespace.clone(),
            node: tenant.backend.any_node().id().clone(),
            metrics: tenant.metrics.clone(),
            sent_at: Instant::now(),
            spans: Vec::new(),
            follow: None,
            sent_bytes: 0,
        }));
    }

    /// The open batch for this tenant, node and protocol (a new one if the
    /// open one is for another).
    fn open(
        &mut self,
        replies: &mut ReplyQueue,
        tenant: &Arc<TenantRt>,
        node: &Arc<NodePool>,
        proto: Protocol,
    ) -> &mut OpenBatch {
        let same = self
            .batch
            .as_ref()
            .is_some_and(|b| Arc::ptr_eq(&b.tenant, tenant) && Arc::ptr_eq(&b.node, node) && b.proto == proto);
        if !same {
            self.flush_batch(replies);
            if self.scratch.capacity() == 0 {
                self.scratch = bufpool::take(bufpool::Class::Scratch);
            } else if self.scratch.capacity() < SCRATCH_LOW {
                self.scratch.reserve(SCRATCH);
            }
            self.batch = Some(OpenBatch {
                tenant: tenant.clone(),
                node: node.clone(),
                follow: None,
                transaction: false,
                proto,
                bytes: std::mem::take(&mut self.scratch),
                count: 0,
                hidden: 0,
                fixes: Fixes::default(),
                spans: Vec::new(),
                shares: Shares::default(),
                answers: None,
                mark: None,
            });
        }
        self.batch.as_mut().expect("opened above")
    }

    /// Gives the encoding scratch back to the pool while nothing is being
    /// encoded, so an idle client holds none.
    pub fn release_idle(&mut self) {
        if self.batch.is_none() && self.scratch.is_empty() {
            bufpool::give(bufpool::Class::Scratch, &mut self.scratch);
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
        if let Some(mut b) = self.batch.take() {
            if b.count == 0 {
                // Its one read joined a flight instead.
                self.scratch = b.bytes;
                return;
            }
            let (tx, rx) = oneshot::channel();
            let bytes = b.bytes.split().freeze();
            self.scratch = b.bytes;
            let pinned = self.pinned.as_ref().filter(|p| Arc::ptr_eq(&p.node, &b.node));
            // Not on the client's own connection: WATCH state lives there, and
            // a command sent again elsewhere would run unguarded by it.
            let follow = b.follow.filter(|_| pinned.is_none()).map(|cluster| Follow {
                cluster,
                client: self.client,
                proto: b.proto,
                request: bytes.clone(),
                transaction: b.transaction,
            });
            let sent_bytes = bytes.len();
            let batch =
                Batch { bytes, count: b.count, reply: tx, shares: b.shares, mark: b.mark.map(|m| Box::new(m) as _) };
            match pinned {
                Some(p) => p.conn.send(batch),
                None => b.node.send(self.client, b.proto, batch),
            }
            let (rx, follow) = match b.answers {
                Some(answers) => (splice_answers(rx, follow, answers), None),
                None => (rx, follow),
            };
            replies.push(Pending::Backend(BackendReplies {
                rx,
                count: b.count,
                hidden: b.hidden,
                fixes: b.fixes,
                namespace: b.tenant.namespace.clone(),
                node: b.node.id().clone(),
                metrics: b.tenant.metrics.clone(),
                sent_at: Instant::now(),
                spans: b.spans,
                follow,
                sent_bytes,
            }));
        }
    }
}
