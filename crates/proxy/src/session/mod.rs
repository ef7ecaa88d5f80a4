//! One client connection: read requests, classify, rewrite and batch them to
//! the tenant's backend, and write every reply back in request order.
//!
//! Invariants: exactly one reply per request, in request order, whatever mix
//! of backend and local replies; a bad command gets an error and the
//! connection goes on; only a protocol error (a broken frame) closes it, after
//! its error reply, as Redis does.

mod connection;
mod writer;

use crate::backend::{Batch, NodePool};
use crate::runtime::{Runtime, TenantRt};
use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use connection::After;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tenantry_protocol::classify::{classify, Action};
use tenantry_protocol::encode::{self, Reply};
use tenantry_protocol::{Protocol, ReplyKeys, Request, RequestParser};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use writer::{BackendReplies, Pending};

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// Commands packed into one backend batch at most.
const MAX_BATCH: usize = 256;
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
/// or `shutdown` fires (then replies in flight are still delivered).
pub async fn serve(stream: TcpStream, runtime: Arc<ArcSwap<Runtime>>, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let limits = runtime.load().limits;
    let (mut rd, wr) = stream.into_split();
    let permits = Arc::new(Semaphore::new(limits.max_pipeline));
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(writer::write_replies(wr, rx, permits.clone()));
    let state = State::new(runtime);
    let mut session = Reader {
        out: Out {
            client: state.id,
            tx,
            local: BytesMut::new(),
            local_count: 0,
            batch: None,
        },
        state,
        parser: RequestParser::new(limits.protocol),
        keys: Vec::new(),
        permits,
    };
    let mut buf = BytesMut::with_capacity(16 * 1024);
    'read: loop {
        loop {
            match session.parser.parse(&mut buf) {
                Ok(Some(req)) => {
                    if session.handle(req).await == After::Close {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    session
                        .out
                        .local(1, |out| {
                            Reply {
                                out,
                                proto: session.state.proto,
                            }
                            .error(&e.to_string())
                        })
                        .await;
                    break 'read;
                }
            }
        }
        session.out.flush().await;
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        tokio::select! {
            read = rd.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => break 'read,
                Ok(_) => {}
            },
            _ = shutdown.cancelled() => break 'read,
        }
    }
    session.out.flush().await;
    let _ = session.out.tx.send(Pending::Close);
    let _ = writer.await;
}

struct Reader {
    state: State,
    parser: RequestParser,
    /// Scratch for key positions, reused across requests.
    keys: Vec<usize>,
    out: Out,
    permits: Arc<Semaphore>,
}

impl Reader {
    async fn handle(&mut self, req: Request) -> After {
        self.take_permit().await;
        let proto = self.state.proto;
        match classify(&req, &mut self.keys) {
            Action::Forward { reply, .. } => {
                let Some(tenant) = self.state.tenant.clone() else {
                    self.out
                        .local(1, |out| Reply { out, proto }.error(NOAUTH))
                        .await;
                    return After::Continue;
                };
                self.out
                    .forward(&tenant, proto, &req.args, &self.keys, reply)
                    .await;
            }
            Action::Connection(cmd) => {
                if self.state.tenant.is_none() && !cmd.allowed_before_auth() {
                    self.out
                        .local(1, |out| Reply { out, proto }.error(NOAUTH))
                        .await;
                    return After::Continue;
                }
                let state = &mut self.state;
                let mut after = After::Continue;
                self.out
                    .local(1, |out| after = connection::handle(state, cmd, &req, out))
                    .await;
                return after;
            }
            Action::Reject(why) => {
                let msg = if self.state.tenant.is_none() {
                    NOAUTH.to_string()
                } else {
                    why.to_string()
                };
                self.out
                    .local(1, |out| Reply { out, proto }.error(&msg))
                    .await;
            }
        }
        After::Continue
    }

    /// One permit per request in flight; when none is left the client has
    /// pipelined `max_pipeline` requests without reading replies: send what
    /// is batched and stop reading until replies drain.
    async fn take_permit(&mut self) {
        match self.permits.try_acquire() {
            Ok(p) => p.forget(),
            Err(_) => {
                self.out.flush().await;
                if let Ok(p) = self.permits.acquire().await {
                    p.forget();
                }
            }
        }
    }
}

/// Builds the reply queue: local replies are gathered, forwarded requests
/// are packed into batches per backend node; the order between them is kept.
struct Out {
    client: u64,
    tx: mpsc::UnboundedSender<Pending>,
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

impl Out {
    async fn local(&mut self, count: usize, write: impl FnOnce(&mut BytesMut)) {
        if self.batch.is_some() {
            // The batch goes first: a later request must not overtake it.
            self.flush().await;
        }
        write(&mut self.local);
        self.local_count += count;
    }

    async fn forward(
        &mut self,
        tenant: &Arc<TenantRt>,
        proto: Protocol,
        args: &[Bytes],
        keys: &[usize],
        reply: ReplyKeys,
    ) {
        self.flush_local();
        let node = tenant.backend.node();
        let same = self.batch.as_ref().is_some_and(|b| {
            Arc::ptr_eq(&b.tenant, tenant) && Arc::ptr_eq(&b.node, node) && b.proto == proto
        });
        if !same {
            self.flush().await;
            self.batch = Some(OpenBatch {
                tenant: tenant.clone(),
                node: node.clone(),
                proto,
                bytes: BytesMut::with_capacity(4096),
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
            self.flush().await;
        }
    }

    fn flush_local(&mut self) {
        if self.local_count > 0 {
            let bytes = self.local.split().freeze();
            let _ = self.tx.send(Pending::Local {
                bytes,
                count: self.local_count,
            });
            self.local_count = 0;
        }
    }

    async fn flush(&mut self) {
        self.flush_local();
        if let Some(b) = self.batch.take() {
            let proto = b.proto;
            let node = b.node.clone();
            let (batch, pending) = b.into_parts();
            let _ = self.tx.send(Pending::Backend(pending));
            node.send(self.client, proto, batch).await;
        }
    }
}

impl OpenBatch {
    fn into_parts(self) -> (Batch, BackendReplies) {
        let (tx, rx) = oneshot::channel();
        let batch = Batch {
            bytes: self.bytes.freeze(),
            count: self.count,
            reply: tx,
        };
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
