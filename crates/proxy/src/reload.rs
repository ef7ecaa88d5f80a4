//! Live reconfiguration: the config file is watched (its directory, since a
//! Kubernetes ConfigMap update swaps a `..data` symlink and a watch on the file
//! itself goes silent after the first swap), re-read on SIGHUP, and polled as a
//! last resort. A new file is validated in full; if it is invalid the running
//! config keeps serving and the error is logged and counted.

use crate::cleanup;
use crate::runtime::Runtime;
use crate::status::Status;
use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tenantry_config::{Change, Config, ConfigDiff};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often the file is re-read even without an event.
const POLL: Duration = Duration::from_secs(5);
/// Events closer together than this are one change (an editor's several writes).
const SETTLE: Duration = Duration::from_millis(100);

/// What a reload needs of the running proxy.
pub(crate) struct Shared {
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub status: Arc<Status>,
    /// Addresses bound at start: changing them needs a restart.
    pub listen: Vec<tenantry_config::Listener>,
    pub admin: Option<SocketAddr>,
    /// The listeners' place count, sized at start.
    pub max_clients: usize,
    pub shutdown: CancellationToken,
}

/// The version operators see: the first 12 hex digits of the file's SHA-256.
pub fn version_of(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Registers for SIGHUP now, so a signal sent as soon as `start_file`
/// returns is not missed (or, with no handler yet, fatal).
pub(crate) fn hangups() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; file changes still reload");
            None
        }
    }
}

pub(crate) async fn watch(path: PathBuf, shared: Arc<Shared>, mut hup: Option<tokio::signal::unix::Signal>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
        let _ = tx.send(());
    })
    .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config directory; SIGHUP and polling still work");
            None
        }
    };
    let mut poll = tokio::time::interval(POLL);
    poll.tick().await;
    loop {
        let forced = tokio::select! {
            Some(()) = rx.recv() => false,
            Some(()) = async { hup.as_mut().expect("guarded").recv().await }, if hup.is_some() => true,
            _ = poll.tick() => false,
            _ = shared.shutdown.cancelled() => return,
        };
        tokio::time::sleep(SETTLE).await;
        while rx.try_recv().is_ok() {}
        reload_from(&path, &shared, forced);
    }
}

/// Reads, validates and applies the file if it changed (or always, if `forced`).
pub(crate) fn reload_from(path: &Path, shared: &Shared, forced: bool) {
    let bytes = match tenantry_config::read(path) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "config reload failed; the previous config keeps serving");
            shared.status.reload_failed(e.to_string());
            return;
        }
    };
    let version = version_of(&bytes);
    if version == shared.status.version() {
        if forced {
            tracing::info!(%version, "SIGHUP: config unchanged");
        }
        return;
    }
    let parsed = tenantry_config::parse_bytes(&bytes, path, &|name| std::env::var(name).ok());
    match parsed {
        Ok(config) => match crate::tls::check(&config) {
            Ok(()) => apply(shared, config, version),
            Err(errors) => {
                for e in &errors {
                    tracing::error!(error = %e, "config rejected; the previous config keeps serving");
                }
                shared.status.reload_failed(errors.join("\n"));
            }
        },
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(error = %e, "config rejected; the previous config keeps serving");
            }
            shared.status.reload_failed(errors.to_string());
        }
    }
}

/// Swaps in `config`: unchanged backends keep their connections, sessions
/// follow on their next request, clients stay connected. Settings that
/// cannot change live are reported, not applied.
pub(crate) fn apply(shared: &Shared, config: Config, version: String) {
    let old = shared.runtime.load_full();
    let mut needs_restart = Vec::new();
    if config.listen != shared.listen {
        needs_restart.push(format!("listen: running on {:?}, config says {:?}", shared.listen, config.listen));
    }
    if config.admin != shared.admin {
        needs_restart.push(format!("admin: running on {:?}, config says {:?}", shared.admin, config.admin));
    }
    if config.limits.max_clients != shared.max_clients {
        needs_restart.push(format!(
            "limits.max_clients: running with {}, config says {}",
            shared.max_clients, config.limits.max_clients
        ));
    }
    for what in &needs_restart {
        tracing::warn!(change = %what, "this setting cannot change live: restart tenantry to apply it");
    }
    let config = Arc::new(config);
    let diff = ConfigDiff::between(&old.config, &config);
    let new = Runtime::new(config.clone(), version.clone(), Some((&old, &diff)), &shared.status.families);
    let cleanups = cleanup::old_generations(&new, &diff);
    log_changes(&diff);
    shared.runtime.store(Arc::new(new));
    shared.status.activate(&version);
    shared.status.reload_ok();
    shared.status.set_needs_restart(needs_restart);
    tracing::info!(%version, generation = shared.runtime.load().generation, "config applied");
    for job in cleanups {
        cleanup::spawn(job, config.cleanup, shared.status.clone(), shared.shutdown.clone());
    }
}

fn log_changes(diff: &ConfigDiff) {
    for (id, change) in &diff.tenants {
        match change {
            Change::Added => tracing::info!(tenant = %id, "tenant added"),
            Change::Changed => tracing::info!(tenant = %id, "tenant changed"),
            Change::Removed => tracing::info!(tenant = %id, "tenant removed"),
            Change::Same => {}
        }
    }
    for (name, change) in &diff.backends {
        match change {
            Change::Added => tracing::info!(backend = %name, "backend added"),
            Change::Changed => tracing::info!(backend = %name, "backend changed: new connections"),
            Change::Removed => tracing::info!(backend = %name, "backend removed"),
            Change::Same => {}
        }
    }
}
