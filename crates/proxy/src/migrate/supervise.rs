//! Starts each migration's tasks when a config asks for it, rebuilds the
//! runtime when one cuts over (its tenant then routes to the target), and
//! when a config no longer asks for one, aborts it (the tenant stayed on its
//! old backend: the target's copies are deleted) or forgets it (the tenant
//! now lives on the target: the record on the old backend is removed).

use super::{driver, follower, marker};
use crate::backend::Router;
use crate::cleanup::delete_namespace;
use crate::lease::{self, Holder};
use crate::runtime::Runtime;
use crate::telemetry::Families;
use crate::tenant::migration::{Keys, Migration, Phase};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tenantry_config::{ConfigDiff, TenantId};
use tenantry_protocol::Namespace;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What is left to know of a migration once its config is gone.
#[derive(Clone)]
struct Ended {
    from: tenantry_config::BackendName,
    from_ns: Namespace,
    to: tenantry_config::BackendName,
    to_ns: Namespace,
    source: Arc<Router>,
    target: Arc<Router>,
    keys: Keys,
    keys_per_sec: u32,
    keep_old: bool,
    stop: CancellationToken,
}

impl Ended {
    fn of(m: &Migration) -> Self {
        Ended {
            from: m.from.clone(),
            from_ns: m.from_ns.clone(),
            to: m.spec.to.clone(),
            to_ns: m.to_ns.clone(),
            source: m.source.clone(),
            target: m.target.clone(),
            keys: m.keys.clone(),
            keys_per_sec: m.spec.keys_per_sec,
            keep_old: m.spec.keep_old,
            stop: m.sync.stop.clone(),
        }
    }
}

pub(crate) async fn supervise(
    runtime: Arc<ArcSwap<Runtime>>,
    families: Arc<Families>,
    me: Holder,
    shutdown: CancellationToken,
) {
    let rebuild = Arc::new(Notify::new());
    let mut known: HashMap<TenantId, Ended> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(follower::POLL) => {}
            _ = rebuild.notified() => {}
            _ = shutdown.cancelled() => return,
        }
        let rt = runtime.load_full();
        let mut stale = false;
        for t in rt.tenants.values() {
            let Some(m) = &t.migration else { continue };
            if !m.started.swap(true, Ordering::SeqCst) {
                let cx = follower::Context {
                    me: me.clone(),
                    runtime: runtime.clone(),
                    rebuild: rebuild.clone(),
                    families: families.clone(),
                    shutdown: shutdown.clone(),
                };
                start(m, cx);
            }
            known.insert(t.id.clone(), Ended::of(m));
            stale |= m.is_cut() != t.moved;
        }
        if stale {
            // A reload built from the runtime of before the cut: build again.
            let same = ConfigDiff::between(&rt.config, &rt.config);
            let next = Runtime::new(rt.config.clone(), rt.version.clone(), Some((&rt, &same)), &families);
            runtime.store(Arc::new(next));
        }
        known.retain(|id, ended| {
            let still = rt.tenants.get(id).and_then(|t| t.migration.as_ref()).is_some_and(|m| {
                m.from == ended.from && m.from_ns == ended.from_ns && m.spec.to == ended.to && m.to_ns == ended.to_ns
            });
            if !still {
                ended.stop.cancel();
                let now = rt.config.tenants.get(id).map(|t| (t.backend.clone(), t.namespace.clone()));
                tokio::spawn(ended_task(id.clone(), ended.clone(), now, me.clone()));
            }
            still
        });
    }
}

fn start(m: &Arc<Migration>, cx: follower::Context) {
    if let Some(rx) = m.marks_rx.lock().expect("not poisoned").take() {
        tokio::spawn(marker::run(rx, m.sync.clone(), Arc::downgrade(m)));
    }
    let weak = Arc::downgrade(m);
    tokio::spawn(driver::run(weak.clone(), cx.me.clone(), cx.shutdown.clone(), m.sync.stop.clone()));
    tokio::spawn(follower::run(weak, cx));
}

/// The config stopped asking for the migration; `now`: where it puts the tenant.
async fn ended_task(tenant: TenantId, e: Ended, now: Option<(tenantry_config::BackendName, Namespace)>, me: Holder) {
    let node = e.keys.node(&e.source);
    // Whoever drove it stops within a lease's time of its own reload.
    let mut tries = 0;
    while !lease::hold(&node, &e.keys.lease, &me).await {
        tries += 1;
        if tries > 30 {
            tracing::warn!(tenant = %tenant, "migration's lease still held elsewhere: leaving its record to that proxy");
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let phase = match node.call(&[b"HGET", &e.keys.state, b"phase"]).await {
        Ok(r) => tenantry_protocol::answer::text(&r).ok().flatten().and_then(|p| Phase::parse(&p)),
        Err(_) => None,
    };
    let moved = matches!(phase, Some(Phase::Cut | Phase::Done));
    match now {
        Some((b, ns)) if b == e.from && ns == e.from_ns && !moved => abort(&tenant, &e).await,
        Some((b, ns)) if b == e.from && ns == e.from_ns => tracing::error!(tenant = %tenant,
            "migrate removed after its cut-over, with the tenant's old backend in the config: it is served from \
             there again, and the target keeps its copies (to finish a migration, set backend and namespace to \
             the target's when removing migrate)"),
        Some((b, ns)) if b == e.to && ns == e.to_ns => {
            if phase == Some(Phase::Cut) && !e.keep_old {
                // The old copies were being deleted when the config moved on.
                for n in e.source.nodes() {
                    let _ = delete_namespace(&n, &e.from_ns, 200, Some(e.keys_per_sec), |_| {}).await;
                }
            }
            if !moved {
                tracing::warn!(tenant = %tenant, "the tenant moved to the target before its migration cut over: \
                    keys not yet copied are not there");
            }
            forget(&e).await;
            tracing::info!(tenant = %tenant, "migration finished: its record on the old backend is removed");
        }
        _ => forget(&e).await,
    }
    lease::release(&node, &e.keys.lease, &me).await;
}

async fn abort(tenant: &TenantId, e: &Ended) {
    let mut deleted = 0;
    for node in e.target.nodes() {
        match delete_namespace(&node, &e.to_ns, 200, Some(e.keys_per_sec.max(1000)), |_| {}).await {
            Ok(n) => deleted += n,
            Err(err) => tracing::warn!(tenant = %tenant, error = %err, "cannot delete the aborted migration's copies"),
        }
    }
    super::target::remove(&e.target, &e.keys).await;
    forget(e).await;
    tracing::info!(tenant = %tenant, deleted, "migration aborted: the target's copies are deleted");
}

/// Deletes the migration's record: every key of it but the lease, which
/// the caller holds and releases.
async fn forget(e: &Ended) {
    if let Err(err) = super::dirty::clear(&e.source, &e.keys).await {
        tracing::warn!(error = %err, "cannot delete the migration's dirty sets");
    }
    let node = e.keys.node(&e.source);
    let pattern = e.keys.pattern();
    let mut cursor = b"0".to_vec();
    loop {
        let reply = match node.call(&[b"SCAN", &cursor, b"MATCH", &pattern, b"COUNT", b"1000"]).await {
            Ok(r) => r,
            Err(err) => return tracing::warn!(error = %err, "cannot delete the migration's record"),
        };
        let Ok((next, keys)) = tenantry_protocol::answer::scan_page(&reply) else { return };
        let doomed: Vec<&[u8]> = keys.iter().map(Vec::as_slice).filter(|k| *k != e.keys.lease.as_slice()).collect();
        if !doomed.is_empty() {
            let mut args: Vec<&[u8]> = vec![b"DEL"];
            args.extend(doomed);
            let _ = node.call(&args).await;
        }
        if next == b"0" {
            return;
        }
        cursor = next;
    }
}
