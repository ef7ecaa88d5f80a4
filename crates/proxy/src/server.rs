//! The listener: accepts clients, bounds how many are served at once, and
//! drains them on shutdown.

use crate::runtime::Runtime;
use crate::session;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tenantry_config::Config;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A running proxy: its listening addresses and how to stop it.
pub struct Proxy {
    pub addrs: Vec<SocketAddr>,
    /// Where the admin server listens, if the config has one.
    pub admin_addr: Option<SocketAddr>,
    runtime: Arc<ArcSwap<Runtime>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Proxy {
    /// Binds every listen address of `config` and starts serving. Backends
    /// start connecting at once; clients are accepted immediately and get
    /// fast errors from a backend that is not up yet.
    pub async fn start(config: &Config) -> std::io::Result<Proxy> {
        let runtime = Arc::new(ArcSwap::from_pointee(Runtime::new(Arc::new(config.clone()), String::new(), None)));
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(config.limits.max_clients));
        let mut addrs = Vec::new();
        for addr in &config.listen {
            let listener = TcpListener::bind(addr).await?;
            addrs.push(listener.local_addr()?);
            tracing::info!(addr = %listener.local_addr()?, "listening");
            tasks.spawn(accept(listener, runtime.clone(), shutdown.clone(), tasks.clone(), permits.clone()));
        }
        let admin_addr = match config.admin {
            Some(addr) => {
                let listener = crate::admin::bind(addr).await?;
                let bound = listener.local_addr()?;
                tracing::info!(addr = %bound, "admin listening");
                tasks.spawn(crate::admin::serve(listener, runtime.clone(), shutdown.clone()));
                Some(bound)
            }
            None => None,
        };
        Ok(Proxy { addrs, admin_addr, runtime, shutdown, tasks })
    }

    /// True once every backend has a live connection.
    pub fn ready(&self) -> bool {
        self.runtime.load().all_backends_up()
    }

    /// Stops accepting, lets sessions deliver the replies they owe, and waits
    /// up to `grace` for them to finish.
    pub async fn shutdown(self, grace: Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            tracing::warn!(?grace, "shutdown grace period over with sessions still open");
        }
    }
}

async fn accept(
    listener: TcpListener,
    runtime: Arc<ArcSwap<Runtime>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    permits: Arc<Semaphore>,
) {
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.cancelled() => return,
        };
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
        tracing::debug!(%peer, "client connected");
        let (runtime, shutdown) = (runtime.clone(), shutdown.clone());
        tasks.spawn(async move {
            session::serve(stream, runtime, shutdown).await;
            drop(permit);
        });
    }
}
