//! The server's own `notify-keyspace-events`. Every class a server
//! publishes costs every write of every tenant on it, so which classes a
//! tenant may turn on is the operator's choice (`tenants.x.keyspace_events`),
//! and each backend node publishes exactly their union, plus what tenantry
//! itself reads (`Exe`: evictions and expirations, attributed to tenants).
//! A tenant's `CONFIG SET notify-keyspace-events` then only chooses what its
//! own subscribers get (`session/config_cmds.rs`); a reload that takes a
//! class away narrows the server again.

use crate::backend::NodePool;
use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantry_config::BackendName;
use tenantry_protocol::answer;
use tenantry_protocol::events::Flags;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(1);
/// A node set before is read again this often (it may have restarted).
const RECHECK: Duration = Duration::from_secs(10);
const NOTIFY: &[u8] = b"notify-keyspace-events";

/// What tenantry reads itself: keyevent messages of evictions and expirations.
pub(crate) fn tenantry_needs() -> Flags {
    Flags::parse(b"Exe").expect("valid flags")
}

/// What each node is to publish, by address: the union of the classes of
/// the tenants of every backend it is a node of (two backends may name one
/// server, with another user or as a migration's target).
fn wanted(rt: &Runtime) -> HashMap<String, (Flags, Arc<NodePool>)> {
    let mut by_backend: HashMap<&BackendName, Flags> = HashMap::new();
    for t in rt.config.tenants.values() {
        let f = by_backend.entry(&t.backend).or_default();
        *f = f.union(t.keyspace_events);
    }
    let mut out: HashMap<String, (Flags, Arc<NodePool>)> = HashMap::new();
    for (name, router) in &rt.backends {
        let flags = by_backend.get(name).copied().unwrap_or_default().union(tenantry_needs());
        for node in router.all_nodes() {
            let entry = out.entry(node.addr().to_string()).or_insert((Flags::default(), node));
            entry.0 = entry.0.union(flags);
        }
    }
    out
}

pub async fn supervise(runtime: Arc<ArcSwap<Runtime>>, shutdown: CancellationToken) {
    // By node address: what was set there and when, and what failed (logged once).
    let mut set: HashMap<String, (Flags, Instant)> = HashMap::new();
    let mut failed: HashMap<String, Flags> = HashMap::new();
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let rt = runtime.load_full();
        for (addr, (flags, node)) in wanted(&rt) {
            if set.get(&addr).is_some_and(|(f, at)| *f == flags && at.elapsed() < RECHECK) {
                continue;
            }
            match apply(&node, flags).await {
                Ok(changed) => {
                    if let Some(from) = changed {
                        tracing::info!(node = %addr, from = %from.to_config(), to = %flags.to_config(),
                            "notify-keyspace-events set to what the node's tenants may enable");
                    }
                    set.insert(addr.clone(), (flags, Instant::now()));
                    failed.remove(&addr);
                }
                Err(e) => {
                    set.remove(&addr);
                    if failed.insert(addr.clone(), flags) != Some(flags) {
                        tracing::warn!(node = %addr, error = %e, flags = %flags.to_config(),
                            "cannot set notify-keyspace-events on the backend (CONFIG SET); set it there by hand");
                    }
                }
            }
        }
    }
}

/// Sets the node's setting to `flags`; what it was, if it changed.
async fn apply(node: &NodePool, flags: Flags) -> crate::error::Result<Option<Flags>> {
    let reply = node.call(&[b"CONFIG", b"GET", NOTIFY]).await?;
    let pair = answer::strings(&reply)?;
    let current = pair.get(1).and_then(|v| Flags::parse(v)).unwrap_or_default();
    if current == flags {
        return Ok(None);
    }
    let value = flags.to_config();
    answer::text(&node.call(&[b"CONFIG", b"SET", NOTIFY, value.as_bytes()]).await?)?;
    Ok(Some(current))
}
