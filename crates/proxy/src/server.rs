//! The listener: accepts clients, bounds how many are served at once, drains
//! them on shutdown; and the entry points that start tenantry from a config
//! value or from a watched file.

use crate::reload::{self, Shared};
use crate::runtime::Runtime;
use crate::session;
use crate::status::Status;
use crate::stream::Stream;
use crate::tls::ListenerAcceptor;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tenantry_config::{Config, ConfigErrors};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a TLS client has to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running proxy: its listening addresses and how to stop it.
pub struct Proxy {
    pub addrs: Vec<SocketAddr>,
    /// Where the admin server listens, if the config has one.
    pub admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    tasks: TaskTracker,
    admin_stop: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid config:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot listen: {0}")]
    Bind(#[from] std::io::Error),
    #[error("TLS files unusable:\n{}", .0.join("\n"))]
    Tls(Vec<String>),
}

impl Proxy {
    /// Starts from a config value (no file to watch). Backends start
    /// connecting at once; clients are accepted immediately and get fast
    /// errors from a backend that is not up yet.
    pub async fn start(config: &Config) -> Result<Proxy, StartError> {
        Self::start_versioned(config.clone(), "inline".to_string()).await
    }

    /// Starts from a config file and keeps following it: file changes (and
    /// ConfigMap symlink swaps) and SIGHUP apply the new file live.
    pub async fn start_file(path: &Path) -> Result<Proxy, StartError> {
        let bytes = tenantry_config::read(path)?;
        let config = tenantry_config::parse_bytes(&bytes, path, &|name| std::env::var(name).ok())?;
        let proxy = Self::start_versioned(config, reload::version_of(&bytes)).await?;
        let hup = reload::hangups();
        proxy.tasks.spawn(reload::watch(path.to_path_buf(), proxy.shared.clone(), hup));
        Ok(proxy)
    }

    async fn start_versioned(config: Config, version: String) -> Result<Proxy, StartError> {
        crate::tls::check(&config).map_err(StartError::Tls)?;
        let status = Arc::new(Status::new(&version));
        let listen = config.listen.clone();
        let admin = config.admin;
        let max_clients = config.limits.max_clients;
        let runtime = Arc::new(ArcSwap::from_pointee(Runtime::new(Arc::new(config), version, None, &status.families)));
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(max_clients));
        // Every session's stop flag, raised when `shutdown` is cancelled.
        let stops = Arc::new(crate::stop::Stops::default());
        {
            let (stops, shutdown) = (stops.clone(), shutdown.clone());
            tasks.spawn(async move {
                shutdown.cancelled().await;
                stops.shutdown();
            });
        }
        let mut addrs = Vec::new();
        for l in &listen {
            let listener = TcpListener::bind(l.addr).await?;
            let bound = listener.local_addr()?;
            addrs.push(bound);
            let tls = match &l.tls {
                Some(t) => {
                    let acceptor = ListenerAcceptor::new(bound, t).map_err(|e| StartError::Tls(vec![e.to_string()]))?;
                    let label = crate::telemetry::metrics::ListenerLabel { listener: bound.to_string() };
                    Some((Arc::new(acceptor), status.families.tls_handshake_failures.get_or_create(&label).clone()))
                }
                None => None,
            };
            tracing::info!(addr = %bound, tls = tls.is_some(), "listening");
            let sessions = Sessions { runtime: runtime.clone(), shutdown: shutdown.clone(), stops: stops.clone(), tls };
            tasks.spawn(accept(listener, sessions, tasks.clone(), permits.clone()));
        }
        let admin_stop = CancellationToken::new();
        let admin_addr = match admin {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await?;
                let bound = listener.local_addr()?;
                tracing::info!(addr = %bound, "admin listening");
                // Outside `tasks`, and stopped only once the drain is over:
                // `/ready` answers 503 all through it.
                tokio::spawn(crate::admin::serve(listener, runtime.clone(), status.clone(), admin_stop.clone()));
                Some(bound)
            }
            None => None,
        };
        let me = crate::lease::Holder::new();
        tasks.spawn(crate::node_events::supervise(
            runtime.clone(),
            status.families.clone(),
            status.notes.clone(),
            me.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::server_events::supervise(runtime.clone(), shutdown.clone()));
        tasks.spawn(crate::backend_users::supervise(runtime.clone(), status.families.clone(), shutdown.clone()));
        tasks.spawn(crate::migrate::supervise(runtime.clone(), status.families.clone(), me.clone(), shutdown.clone()));
        tasks.spawn(crate::quota::supervise(runtime.clone(), status.notes.clone(), me, shutdown.clone()));
        let shared = Arc::new(Shared { runtime, status, listen, admin, max_clients, shutdown });
        Ok(Proxy { addrs, admin_addr, shared, tasks, admin_stop })
    }

    /// True once every backend has a live connection.
    pub fn ready(&self) -> bool {
        self.shared.runtime.load().all_backends_up()
    }

    /// The active config's version (first 12 hex digits of the file's SHA-256).
    pub fn config_version(&self) -> String {
        self.shared.status.version()
    }

    /// Applies a new config value as a reload would.
    pub fn apply(&self, config: Config, version: String) {
        reload::apply(&self.shared, config, version);
    }

    /// Test only: sends `args` as they are, not rewritten into the tenant's
    /// namespace, on the tenant's backend connections (its own backend user's,
    /// if it has one): what a bug in the rewriting would send.
    #[cfg(feature = "test-hooks")]
    pub async fn send_unrewritten(&self, tenant: &str, args: &[&[u8]]) -> crate::error::Result<bytes::Bytes> {
        use crate::error::{Error, Kind};
        let rt = self.shared.runtime.load_full();
        let t = rt
            .tenants
            .get(&tenantry_config::TenantId::new(tenant))
            .ok_or_else(|| Error::new(Kind::Invalid, "no such tenant"))?;
        let node = t.backend.nodes().into_iter().next().ok_or_else(|| Error::new(Kind::Backend, "no node"))?;
        Ok(node.call(args).await?)
    }

    /// Resolves when `POST /drain` on the admin port asks for a drain.
    pub async fn drain_requested(&self) {
        self.shared.status.drain_requested.notified().await
    }

    /// Drains: `/ready` answers 503 at once, the listeners stop accepting,
    /// every request already received is answered, and each connection is
    /// closed between requests (never with a reply owed); waits up to
    /// `grace` for the last client to go.
    pub async fn shutdown(self, grace: Duration) {
        let started = std::time::Instant::now();
        self.shared.status.draining.store(true, std::sync::atomic::Ordering::Relaxed);
        let clients = self.clients();
        tracing::info!(clients, ?grace, "draining");
        self.shared.shutdown.cancel();
        self.tasks.close();
        match tokio::time::timeout(grace, self.tasks.wait()).await {
            Ok(()) => tracing::info!(clients, took = ?started.elapsed(), "drained: every client connection closed"),
            Err(_) => {
                tracing::warn!(?grace, still_open = self.clients(), "drain time over with clients still connected")
            }
        }
        self.admin_stop.cancel();
    }

    /// Client connections open now.
    fn clients(&self) -> usize {
        let rt = self.shared.runtime.load();
        rt.tenants.values().map(|t| t.connections.load(std::sync::atomic::Ordering::Relaxed)).sum()
    }
}

impl Drop for Proxy {
    /// A proxy dropped without `shutdown` (tests) takes its admin server along.
    fn drop(&mut self) {
        self.admin_stop.cancel();
    }
}

/// What every session of a listener is started with.
#[derive(Clone)]
struct Sessions {
    runtime: Arc<ArcSwap<Runtime>>,
    shutdown: CancellationToken,
    stops: Arc<crate::stop::Stops>,
    /// A TLS listener's acceptor, and its count of failed handshakes.
    tls: Option<(Arc<ListenerAcceptor>, prometheus_client::metrics::counter::Counter)>,
}

async fn accept(listener: TcpListener, sessions: Sessions, tasks: TaskTracker, permits: Arc<Semaphore>) {
    let shutdown = sessions.shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(stream);
            continue;
        };
        tracing::debug!(%peer, "client connected");
        let Sessions { runtime, shutdown, stops, tls } = sessions.clone();
        tasks.spawn(async move {
            let (stream, identities) = match tls {
                None => (Stream::Plain(stream), Vec::new()),
                Some((tls, failures)) => match handshake(&tls, stream, peer, &shutdown).await {
                    Ok(s) => s,
                    Err(NoSession::Failed) => {
                        failures.inc();
                        return;
                    }
                    Err(NoSession::Gone) => return,
                },
            };
            session::serve(stream, identities, runtime, shutdown, stops).await;
            drop(permit);
        });
    }
}

/// A TLS client's handshake, bounded in time. A client that speaks plain
/// RESP to a TLS port is told so in plain text (a TLS ClientHello starts
/// with 0x16; RESP never does) rather than left with a dropped connection.
async fn handshake(
    tls: &ListenerAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) -> Result<(Stream, Vec<tenantry_config::CertIdentity>), NoSession> {
    let work = async {
        let mut first = [0u8; 1];
        // Gone before a byte (a TCP health check): not a failed handshake.
        if tcp.peek(&mut first).await.unwrap_or(0) == 0 {
            return Err(NoSession::Gone);
        }
        if first[0] != 0x16 {
            tracing::debug!(%peer, "plain-text client on a TLS listener refused");
            let _ = tcp.try_write(b"-ERR this port speaks TLS only: connect with TLS (redis-cli --tls)\r\n");
            return Err(NoSession::Failed);
        }
        match tls.accept(tcp).await {
            Ok(s) => {
                let identities = crate::tls::identities(&s);
                Ok((Stream::from(s), identities))
            }
            Err(e) => {
                tracing::warn!(%peer, error = %crate::tls::describe(&e), "TLS handshake with a client failed");
                Err(NoSession::Failed)
            }
        }
    };
    tokio::select! {
        r = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, work) => r.unwrap_or_else(|_| {
            tracing::warn!(%peer, timeout = ?TLS_HANDSHAKE_TIMEOUT, "TLS handshake with a client timed out");
            Err(NoSession::Failed)
        }),
        _ = shutdown.cancelled() => Err(NoSession::Gone),
    }
}

/// Why a TLS client got no session.
enum NoSession {
    /// It went away first, or tenantry is shutting down.
    Gone,
    /// Its handshake failed or timed out (counted).
    Failed,
}

/// A client past `max_clients`: told so as Redis tells it, and closed at
/// once, without a task or a buffer (a flood of them costs the clients
/// being served no more than the accepts).
fn refuse(stream: tokio::net::TcpStream) {
    // A fresh socket's send buffer always takes one short line.
    let _ = stream.try_write(b"-ERR max number of clients reached\r\n");
    tracing::debug!("client refused: max_clients reached");
}
