//! One multiplexed, pipelined connection to a Redis node.
//!
//! Invariants: batches are written in the order they are queued, and each
//! batch receives exactly its own `count` replies, in order, or an error.
//! When the connection breaks, every batch in flight gets an error (its reply
//! sender is dropped or answered); no reply can reach another batch, because
//! a broken connection is never reused: a new one starts with an empty queue.

use super::flights::Shares;
use crate::out_queue::OutQueue;
use crate::stream::Stream;
use crate::tls::{BackendConnector, TlsConnectError, TlsError};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tenantry_config::{Backend, BackendAddr, BackendAuth, BackendName};
use tenantry_protocol::reply::ReplyScanner;
use tenantry_protocol::Protocol;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

impl From<BackendError> for crate::error::Error {
    fn from(e: BackendError) -> Self {
        crate::error::Error::new(crate::error::Kind::Backend, e.to_string())
    }
}

impl From<ConnError> for crate::error::Error {
    fn from(e: ConnError) -> Self {
        crate::error::Error::new(crate::error::Kind::Backend, e.to_string())
    }
}

/// Why a connection to a node could not be made, or broke.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Where the node is, is not known (a sentinel backend without a master).
    #[error("{0}")]
    Nowhere(String),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("TLS settings unusable: {0}")]
    TlsSettings(Arc<TlsError>),
    #[error("TLS handshake timed out after {0:?}")]
    TlsTimeout(Duration),
    #[error(transparent)]
    Tls(#[from] TlsConnectError),
    #[error("handshake timed out")]
    HandshakeTimeout,
    #[error("HELLO failed: {0}")]
    Hello(String),
    #[error("connection closed by the backend")]
    Closed,
    #[error("no reply within {0:?}")]
    NoReply(Duration),
    #[error("invalid reply: {0}")]
    InvalidReply(String),
    #[error("reply without a request (protocol out of sync)")]
    OutOfSync,
    #[error("the client does not read its invalidation messages")]
    PushesUnread,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Commands from one client, encoded back to back, answered together.
pub struct Batch {
    pub bytes: Bytes,
    pub count: usize,
    pub reply: oneshot::Sender<BatchReply>,
    /// Its reads whose replies others wait for (request coalescing).
    pub shares: Shares,
    /// Dropped once the batch's replies are read (a migrating tenant's
    /// writes are marked dirty then).
    pub mark: Option<AfterReplies>,
}

/// Something a batch carries until its replies are read, then drops.
pub type AfterReplies = Box<dyn Send + Sync>;

impl Batch {
    pub fn new(bytes: Bytes, count: usize, reply: oneshot::Sender<BatchReply>) -> Batch {
        Batch { bytes, count, reply, shares: Shares::default(), mark: None }
    }
}

/// The `count` replies of a batch, back to back, or why there are none.
pub type BatchReply = Result<Bytes, BackendError>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("backend '{backend}' ({addr}) is unavailable: {reason}")]
    Unavailable { backend: BackendName, addr: BackendAddr, reason: String },
    #[error("backend '{backend}' ({addr}) connection lost before the reply")]
    Lost { backend: BackendName, addr: BackendAddr },
}

#[derive(Debug)]
pub struct ConnSettings {
    pub backend: BackendName,
    pub addr: BackendAddr,
    auth: Option<BackendAuth>,
    connect_timeout: Duration,
    request_timeout: Duration,
    pub version: OnceLock<String>,
    /// A cluster replica that serves reads: `READONLY` after the handshake.
    pub readonly: bool,
    /// The master a sentinel named: `ROLE` after the handshake, and a node
    /// that is not a master (any more) is refused like a failed connect.
    pub must_be_master: bool,
    /// Told when a connection fails or breaks (a sentinel backend then asks
    /// its sentinels again).
    pub on_broken: Option<Arc<tokio::sync::Notify>>,
    /// No node to connect to yet: connects fail at once with this reason
    /// (a sentinel backend's master while no sentinel has named it).
    pub nowhere: Option<Arc<std::sync::Mutex<String>>>,
    tls: BackendTlsSetup,
    /// The backend's id of a shared RESP2 connection to the node (0: none
    /// up): it never subscribes, so invalidations redirected to it are
    /// dropped by Redis, as for a client that is not subscribed
    /// (`session/tracking.rs`).
    pub quiet_id: std::sync::atomic::AtomicU64,
}

/// A backend's TLS: none, its connector, or why its files could not be
/// used (its connections then fail with that reason: never plain text).
pub type BackendTlsSetup = Option<Result<Arc<BackendConnector>, Arc<TlsError>>>;

impl ConnSettings {
    pub fn new(backend: &Backend, addr: &BackendAddr, tls: BackendTlsSetup) -> Self {
        ConnSettings {
            backend: backend.name.clone(),
            addr: addr.clone(),
            tls,
            auth: backend.auth.clone(),
            connect_timeout: backend.connect_timeout,
            request_timeout: backend.request_timeout,
            version: OnceLock::new(),
            readonly: false,
            must_be_master: false,
            on_broken: None,
            nowhere: None,
            quiet_id: Default::default(),
        }
    }

    fn unavailable(&self, reason: impl ToString) -> BackendError {
        BackendError::Unavailable { backend: self.backend.clone(), addr: self.addr.clone(), reason: reason.to_string() }
    }
}

#[derive(Debug)]
pub struct ConnHandle {
    tx: mpsc::UnboundedSender<Batch>,
    up: Arc<AtomicBool>,
}

impl ConnHandle {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Queues a batch. The queue is not bounded here: each client bounds the
    /// requests it has in flight (`max_pipeline`), which bounds this queue.
    pub fn send(&self, batch: Batch) {
        // The task only ends when every handle is gone, so this cannot fail
        // while `self` lives; if it did, dropping the batch errors its client.
        let _ = self.tx.send(batch);
    }
}

/// The request timeout is checked this many times per timeout.
const TICKS_PER_TIMEOUT: u32 = 4;

/// Bytes gathered into one write to the backend.
const WRITE_GATHER: usize = 256 * 1024;

pub fn spawn_connection(settings: Arc<ConnSettings>, proto: Protocol) -> ConnHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let up = Arc::new(AtomicBool::new(false));
    tokio::spawn(manage(settings, proto, rx, up.clone()));
    ConnHandle { tx, up }
}

/// A connection for one client alone (WATCH state lives on it). It is never
/// replaced: once it breaks, every later batch gets an error, so a
/// transaction can never run without the WATCH it was guarded by.
/// Out-of-band pushes (`pushes`) go to the client: invalidation messages.
pub fn spawn_pinned(settings: Arc<ConnSettings>, proto: Protocol, pushes: mpsc::Sender<Bytes>) -> ConnHandle {
    let (tx, mut rx) = mpsc::unbounded_channel::<Batch>();
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    tokio::spawn(async move {
        let reason = match connect(&settings, proto).await {
            Ok(stream) => {
                flag.store(true, Ordering::Relaxed);
                let result = serve(&settings, stream, &mut rx, Some(&pushes)).await;
                flag.store(false, Ordering::Relaxed);
                match result {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        let error = settings.unavailable(format!("the client's own connection (WATCH) failed: {reason}"));
        while let Some(b) = rx.recv().await {
            let _ = b.reply.send(Err(error.clone()));
        }
    });
    ConnHandle { tx, up }
}

/// Connects, serves until the connection breaks, then reconnects with
/// exponential backoff, answering batches with a fast error meanwhile.
async fn manage(
    settings: Arc<ConnSettings>,
    proto: Protocol,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    up: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let reason = match connect_with_id(&settings, proto).await {
            Ok((stream, id)) => {
                backoff = Duration::from_millis(50);
                up.store(true, Ordering::Relaxed);
                let quiet = id.filter(|_| proto == Protocol::Resp2).unwrap_or(0);
                if quiet != 0 {
                    settings.quiet_id.store(quiet, Ordering::Relaxed);
                }
                tracing::info!(backend = %settings.backend, addr = %settings.addr, ?proto, "backend connected");
                let result = serve(&settings, stream, &mut rx, None).await;
                up.store(false, Ordering::Relaxed);
                let _ = settings.quiet_id.compare_exchange(quiet, 0, Ordering::Relaxed, Ordering::Relaxed);
                match result {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        if let Some(broken) = &settings.on_broken {
            broken.notify_one();
        }
        // A node not known yet has nothing to report here: what keeps it
        // unknown is logged where it is looked for.
        if settings.nowhere.is_none() {
            tracing::warn!(backend = %settings.backend, addr = %settings.addr, error = %reason, retry_in = ?backoff, "backend connection failed");
        }
        let error = settings.unavailable(&reason);
        let retry = tokio::time::sleep(backoff);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                _ = &mut retry => break,
                batch = rx.recv() => match batch {
                    Some(b) => { let _ = b.reply.send(Err(error.clone())); }
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

pub(crate) async fn connect(settings: &ConnSettings, proto: Protocol) -> Result<Stream, ConnError> {
    Ok(connect_with_id(settings, proto).await?.0)
}

/// Connects, and the backend's id of the connection (from HELLO's reply).
async fn connect_with_id(settings: &ConnSettings, proto: Protocol) -> Result<(Stream, Option<u64>), ConnError> {
    if let Some(why) = &settings.nowhere {
        return Err(ConnError::Nowhere(why.lock().expect("not poisoned").clone()));
    }
    let tcp = tokio::time::timeout(settings.connect_timeout, TcpStream::connect(settings.addr.as_str()))
        .await
        .map_err(|_| ConnError::ConnectTimeout(settings.connect_timeout))??;
    tcp.set_nodelay(true)?;
    let mut stream = match &settings.tls {
        None => Stream::Plain(tcp),
        Some(Err(e)) => return Err(ConnError::TlsSettings(e.clone())),
        Some(Ok(tls)) => tokio::time::timeout(settings.connect_timeout, tls.connect(tcp, settings.addr.host()))
            .await
            .map_err(|_| ConnError::TlsTimeout(settings.connect_timeout))??
            .into(),
    };
    let mut hello: Vec<&[u8]> = vec![b"HELLO", if proto == Protocol::Resp3 { b"3" } else { b"2" }];
    if let Some(auth) = &settings.auth {
        hello.push(b"AUTH");
        hello.push(auth.username.as_deref().unwrap_or("default").as_bytes());
        hello.push(auth.password.expose());
    }
    hello.extend_from_slice(&[b"SETNAME", b"tenantry"]);
    let mut out = BytesMut::new();
    let ns = tenantry_protocol::Namespace::new("-").expect("valid");
    tenantry_protocol::encode::command(&mut out, &hello, &[], &ns);
    if settings.readonly {
        tenantry_protocol::encode::command(&mut out, &[b"READONLY"], &[], &ns);
    }
    if settings.must_be_master {
        tenantry_protocol::encode::command(&mut out, &[b"ROLE"], &[], &ns);
    }
    let reply = tokio::time::timeout(settings.connect_timeout, async {
        stream.send_all(&out).await?;
        let mut buf = BytesMut::with_capacity(1024);
        let hello = read_reply(&mut stream, &mut buf).await?;
        if settings.readonly {
            let readonly = read_reply(&mut stream, &mut buf).await?;
            if readonly.first() == Some(&b'-') && hello.first() != Some(&b'-') {
                return Err(std::io::Error::other(format!(
                    "READONLY failed: {}",
                    String::from_utf8_lossy(&readonly[1..]).trim_end()
                )));
            }
        }
        if settings.must_be_master {
            let role = read_reply(&mut stream, &mut buf).await?;
            if hello.first() != Some(&b'-') {
                match tenantry_protocol::sentinel::role(&role) {
                    Ok(r) if r == "master" => {}
                    Ok(r) => return Err(std::io::Error::other(format!("ROLE says {r}: not the master (any more)"))),
                    Err(e) => return Err(std::io::Error::other(format!("ROLE failed: {e}"))),
                }
            }
        }
        Ok(hello)
    })
    .await
    .map_err(|_| ConnError::HandshakeTimeout)??;
    if reply.first() == Some(&b'-') {
        return Err(ConnError::Hello(String::from_utf8_lossy(&reply[1..]).trim_end().to_string()));
    }
    if let Some(v) = hello_field(&reply, b"version") {
        let _ = settings.version.set(v);
    }
    Ok((stream, hello_field(&reply, b"id").and_then(|id| id.parse().ok())))
}

/// Reads one whole reply during the handshake.
async fn read_reply(stream: &mut Stream, buf: &mut BytesMut) -> std::io::Result<BytesMut> {
    let mut scanner = ReplyScanner::new();
    loop {
        if let Some(n) = scanner.scan(buf).map_err(std::io::Error::other)? {
            return Ok(buf.split_to(n));
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::Error::other("closed during handshake"));
        }
    }
}

/// Finds `name` followed by a bulk or simple string in a HELLO reply.
fn hello_field(reply: &[u8], name: &[u8]) -> Option<String> {
    let mut needle = format!("${}\r\n", name.len()).into_bytes();
    needle.extend_from_slice(name);
    needle.extend_from_slice(b"\r\n");
    let at = reply.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let rest = &reply[at..];
    let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
    match rest.first()? {
        b'+' | b':' => Some(String::from_utf8_lossy(&rest[1..line_end]).into_owned()),
        b'$' => {
            let body = &rest[line_end + 2..];
            let len: usize = std::str::from_utf8(&rest[1..line_end]).ok()?.parse().ok()?;
            Some(String::from_utf8_lossy(body.get(..len)?).into_owned())
        }
        _ => None,
    }
}

struct InFlight {
    count: usize,
    reply: oneshot::Sender<BatchReply>,
    shares: Shares,
    /// Dropped (marking its keys) with the batch, once its replies are read.
    _mark: Option<AfterReplies>,
}

/// Replies read so far for the batch at the head of the queue.
#[derive(Default)]
struct Head {
    len: usize,
    done: usize,
}

/// Serves one connection in one task: writes batches a runtime turn after
/// they come (gathered into vectored writes), matches replies to batches in
/// order. Returns `Ok(())` when the pool is gone, `Err` when the connection
/// broke; batches still queued are dropped with it, which answers their
/// clients with an error.
async fn serve(
    settings: &Arc<ConnSettings>,
    mut stream: Stream,
    rx: &mut mpsc::UnboundedReceiver<Batch>,
    pushes: Option<&mpsc::Sender<Bytes>>,
) -> Result<(), ConnError> {
    let timeout = settings.request_timeout;
    let mut out = OutQueue::default();
    let mut queue: VecDeque<InFlight> = VecDeque::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut scanner = ReplyScanner::new();
    let mut head = Head::default();
    // Ticks since the last read while replies are owed: checked by tick
    // rather than by reading the clock on every read. (The queue only
    // empties through a read, so a new batch always finds it at zero.)
    let mut silent_ticks = 0u32;
    let mut tick = tokio::time::interval(timeout / TICKS_PER_TIMEOUT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut rd, mut wr) = stream.split();
    loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            biased;
            // `read_buf` clears readiness on a short read: no extra EAGAIN read.
            read = rd.read_buf(&mut buf) => {
                match read {
                    Ok(0) => return Err(ConnError::Closed),
                    Ok(_) => silent_ticks = 0,
                    Err(e) => return Err(e.into()),
                }
                deliver(&mut buf, &mut scanner, &mut head, &mut queue, pushes)?;
            }
            batch = rx.recv() => {
                let Some(batch) = batch else { return Ok(()) };
                // Before writing, let the runtime poll its sockets once more
                // (a yield runs after that poll): requests that arrived
                // meanwhile join this write, as twemproxy's wait for the
                // backend's write readiness does. Measured with 50 clients
                // at pipeline 1: Redis read 26-27 commands per read instead
                // of 10 (redis-benchmark on one core, tenantry and Redis on
                // the other), and GET throughput went from 0.58 to 0.74 of
                // Redis's own (unpinned); a lone client's latency held.
                tokio::task::yield_now().await;
                let mut next = Some(batch);
                while let Some(b) = next.take() {
                    out.push(b.bytes);
                    queue.push_back(InFlight { count: b.count, reply: b.reply, shares: b.shares, _mark: b.mark });
                    if out.len() < WRITE_GATHER {
                        next = rx.try_recv().ok();
                    }
                }
                wr.try_send(&mut out)?;
            }
            sent = wr.send(&mut out), if wr.owes(&out) => {
                sent?;
            }
            _ = tick.tick() => {
                if !queue.is_empty() {
                    silent_ticks += 1;
                    // A read falls between ticks: only the tick after
                    // TICKS_PER_TIMEOUT of them is a whole timeout past it.
                    if silent_ticks > TICKS_PER_TIMEOUT {
                        return Err(ConnError::NoReply(timeout));
                    }
                }
            }
        }
    }
}

/// Hands every batch whose replies have all arrived to its client.
fn deliver(
    buf: &mut BytesMut,
    scanner: &mut ReplyScanner,
    head: &mut Head,
    queue: &mut VecDeque<InFlight>,
    pushes: Option<&mpsc::Sender<Bytes>>,
) -> Result<(), ConnError> {
    while head.len < buf.len() {
        let len = match scanner.scan(&buf[head.len..]) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(()),
            Err(e) => return Err(ConnError::InvalidReply(e.to_string())),
        };
        if buf[head.len] == b'>' {
            // An out-of-band push: to the client's own connection's owner
            // (invalidations for client-side caching); shared connections
            // expect none and drop them.
            let mut tail = buf.split_off(head.len);
            let push = tail.split_to(len).freeze();
            buf.unsplit(tail);
            if let Some(sink) = pushes {
                // A client too slow for its invalidations cannot trust its
                // cache: the connection goes, as Redis's output limits would.
                sink.try_send(push).map_err(|_| ConnError::PushesUnread)?;
            }
            continue;
        }
        let Some(front) = queue.front_mut() else {
            return Err(ConnError::OutOfSync);
        };
        if !front.shares.is_empty() {
            // Waiters get their copy now, whatever the leading client is doing.
            front.shares.reply(head.done, &buf[head.len..head.len + len]);
        }
        head.len += len;
        head.done += 1;
        if head.done == front.count {
            let front = queue.pop_front().expect("checked");
            let _ = front.reply.send(Ok(buf.split_to(head.len).freeze()));
            *head = Head::default();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::hello_field;

    #[test]
    fn reads_version_from_hello_replies() {
        let resp2 = b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n";
        assert_eq!(hello_field(resp2, b"version").as_deref(), Some("7.0.15"));
        let resp3 = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n+7.2.4\r\n";
        assert_eq!(hello_field(resp3, b"version").as_deref(), Some("7.2.4"));
    }
}
