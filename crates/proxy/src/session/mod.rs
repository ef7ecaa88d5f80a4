//! One client connection: read requests, classify, rewrite and batch them to
//! the tenant's backend, and write every reply back in request order.
//!
//! Invariants: exactly one reply per request, in request order, whatever mix
//! of backend and local replies; a bad command gets an error and the
//! connection goes on; only a protocol error (a broken frame) closes it, after
//! its error reply, as Redis does.

mod connection;
mod replies;

use crate::backend::{Batch, BatchReply, NodePool};
use crate::out_queue::OutQueue;
use crate::runtime::{Runtime, TenantRt};
use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use connection::After;
use replies::{BackendReplies, Pending, ReplyQueue};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tenantry_protocol::classify::{classify, Action};
use tenantry_protocol::encode::{self, Reply};
use tenantry_protocol::{Protocol, ReplyKeys, Request, RequestParser};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// Commands packed into one backend batch at most.
const MAX_BATCH: usize = 256;
/// Replies waiting for a slow client beyond this stop the reading of its
/// requests (with `max_pipeline`, this bounds what one client can make
/// tenantry hold, where Redis would buffer without limit).
const MAX_OUTPUT: usize = 1024 * 1024;
const NOAUTH: &str = "NOAUTH Authentication required.";

/// Per-connection state that connection commands change.
pub struct State {
    pub id: u64,
    pub runtime: Arc<ArcSwap<Runtime>>,
    /// `None`: not authenticated and no default tenant.
    pub tenant: Option<Arc<TenantRt>>,
    pub proto: Protocol,
    pub name: Option<Bytes>,
}

impl State {
    fn new(runtime: Arc<ArcSwap<Runtime>>) -> Self {
        let tenant = runtime.load().default_tenant.clone();
        State {
            id: NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed),
            runtime,
            tenant,
            proto: Protocol::Resp2,
            name: None,
        }
    }

    /// RESET: back to a new connection's state, keeping the id.
    fn reset(&mut self) {
        self.tenant = self.runtime.load().default_tenant.clone();
        self.proto = Protocol::Resp2;
        self.name = None;
    }
}

/// Serves one client until it disconnects, sends QUIT, breaks the protocol,
/// or `shutdown` fires; replies already owed are delivered first. One task
/// does everything for the connection, so a request costs no task switch
/// on the client side.
pub async fn serve(mut stream: TcpStream, runtime: Arc<ArcSwap<Runtime>>, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let limits = runtime.load().limits;
    let state = State::new(runtime);
    let mut s = Session {
        batcher: Batcher { client: state.id, local: BytesMut::new(), local_count: 0, batch: None },
        state,
        parser: RequestParser::new(limits.protocol),
        keys: Vec::new(),
        replies: ReplyQueue::default(),
        out: OutQueue::default(),
    };
    let mut inbuf = BytesMut::with_capacity(16 * 1024);
    let (mut closing, mut eof) = (false, false);
    // `read_buf` on the read half (not `try_read` on the stream) so a short
    // read clears readiness: no extra read that only returns EAGAIN.
    let (mut rd, wr) = stream.split();
    let sock: &TcpStream = wr.as_ref();
    loop {
        if !closing && s.out.len() < MAX_OUTPUT {
            closing = s.handle_buffered(&mut inbuf, limits.max_pipeline);
        }
        s.batcher.flush(&mut s.replies);
        s.replies.drain_ready(&mut s.out, None);
        if s.out.try_write(sock).is_err() {
            return;
        }
        if (closing || eof) && s.replies.is_empty() && s.out.is_empty() {
            return;
        }
        // Backpressure: a client with `max_pipeline` requests in flight, or
        // with `MAX_OUTPUT` of replies it has not read, is not read.
        let can_read = !closing && !eof && s.replies.in_flight < limits.max_pipeline && s.out.len() < MAX_OUTPUT;
        let want_write = !s.out.is_empty();
        if can_read && inbuf.capacity() - inbuf.len() < 4096 {
            inbuf.reserve(16 * 1024);
        }
        let event = {
            let head = s.replies.head_rx();
            let has_head = head.is_some();
            tokio::select! {
                r = rd.read_buf(&mut inbuf), if can_read => Event::Read(r),
                r = async { head.expect("guarded").await }, if has_head => Event::Reply(r.map_err(|_| ())),
                r = sock.writable(), if want_write => Event::Writable(r.is_ok()),
                _ = shutdown.cancelled(), if !closing => Event::Shutdown,
            }
        };
        match event {
            Event::Read(Ok(0)) => eof = true,
            Event::Read(Ok(_)) | Event::Writable(true) => {}
            Event::Read(Err(_)) | Event::Writable(false) => return,
            Event::Reply(r) => s.replies.drain_ready(&mut s.out, Some(r)),
            Event::Shutdown => closing = true,
        }
    }
}

enum Event {
    Read(std::io::Result<usize>),
    Reply(Result<BatchReply, ()>),
    Writable(bool),
    Shutdown,
}

struct Session {
    state: State,
    parser: RequestParser,
    /// Scratch for key positions, reused across requests.
    keys: Vec<usize>,
    batcher: Batcher,
    replies: ReplyQueue,
    out: OutQueue,
}

impl Session {
    /// Handles every complete request in `inbuf` while fewer than
    /// `max_pipeline` are in flight. Returns true when the connection is to
    /// close once its replies are written (QUIT, protocol error).
    fn handle_buffered(&mut self, inbuf: &mut BytesMut, max_pipeline: usize) -> bool {
        while self.replies.in_flight + self.batcher.pending() < max_pipeline {
            match self.parser.parse(inbuf) {
                Ok(Some(req)) => {
                    if self.handle(req) == After::Close {
                        return true;
                    }
                }
                Ok(None) => return false,
                Err(e) => {
                    let proto = self.state.proto;
                    self.batcher.local(&mut self.replies, |out| Reply { out, proto }.error(&e.to_string()));
                    return true;
                }
            }
        }
        false
    }

    fn handle(&mut self, req: Request) -> After {
        let proto = self.state.proto;
        let replies = &mut self.replies;
        match classify(&req, &mut self.keys) {
            Action::Forward { reply, .. } => match self.state.tenant.clone() {
                Some(tenant) => self.batcher.forward(replies, &tenant, proto, &req.args, &self.keys, reply),
                None => self.batcher.local(replies, |out| Reply { out, proto }.error(NOAUTH)),
            },
            Action::Connection(cmd) => {
                if self.state.tenant.is_none() && !cmd.allowed_before_auth() {
                    self.batcher.local(replies, |out| Reply { out, proto }.error(NOAUTH));
                    return After::Continue;
                }
                let state = &mut self.state;
                let mut after = After::Continue;
                self.batcher.local(replies, |out| after = connection::handle(state, cmd, &req, out));
                return after;
            }
            Action::Reject(why) => {
                let msg = if self.state.tenant.is_none() { NOAUTH.to_string() } else { why.to_string() };
                self.batcher.local(replies, |out| Reply { out, proto }.error(&msg));
            }
        }
        After::Continue
    }
}

/// Gathers consecutive local replies, and packs consecutive forwarded
/// requests into one batch per backend node; keeps the order between them.
struct Batcher {
    client: u64,
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
    strip: Vec<(usize, ReplyKeys)>,
}

impl Batcher {
    /// Requests handled but not yet in the reply queue.
    fn pending(&self) -> usize {
        self.local_count + self.batch.as_ref().map_or(0, |b| b.count)
    }

    fn local(&mut self, replies: &mut ReplyQueue, write: impl FnOnce(&mut BytesMut)) {
        // The open batch goes first: a later request must not overtake it.
        self.flush_batch(replies);
        write(&mut self.local);
        self.local_count += 1;
    }

    fn forward(
        &mut self,
        replies: &mut ReplyQueue,
        tenant: &Arc<TenantRt>,
        proto: Protocol,
        args: &[Bytes],
        keys: &[usize],
        reply: ReplyKeys,
    ) {
        self.flush_local(replies);
        let node = tenant.backend.route(args, keys);
        let same = self
            .batch
            .as_ref()
            .is_some_and(|b| Arc::ptr_eq(&b.tenant, tenant) && Arc::ptr_eq(&b.node, node) && b.proto == proto);
        if !same {
            self.flush_batch(replies);
            self.batch = Some(OpenBatch {
                tenant: tenant.clone(),
                node: node.clone(),
                proto,
                bytes: BytesMut::new(),
                count: 0,
                strip: Vec::new(),
            });
        }
        let b = self.batch.as_mut().expect("opened above");
        encode::command(&mut b.bytes, args, keys, &tenant.namespace);
        if reply != ReplyKeys::None {
            b.strip.push((b.count, reply));
        }
        b.count += 1;
        if b.count >= MAX_BATCH {
            self.flush_batch(replies);
        }
    }

    fn flush(&mut self, replies: &mut ReplyQueue) {
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
            let (proto, node) = (b.proto, b.node.clone());
            let (batch, pending) = b.into_parts();
            replies.push(Pending::Backend(pending));
            node.send(self.client, proto, batch);
        }
    }
}

impl OpenBatch {
    fn into_parts(self) -> (Batch, BackendReplies) {
        let (tx, rx) = oneshot::channel();
        let batch = Batch { bytes: self.bytes.freeze(), count: self.count, reply: tx };
        let pending = BackendReplies {
            rx,
            count: self.count,
            strip: self.strip,
            namespace: self.tenant.namespace.clone(),
            node: self.node,
        };
        (batch, pending)
    }
}
