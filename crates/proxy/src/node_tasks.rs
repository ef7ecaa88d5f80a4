//! One background task per backend node of the running config, for work
//! that talks to nodes on its own (telemetry, memory quotas). Tasks start
//! when a node appears, and stop when it leaves the config or its backend is
//! replaced by a reload.

use crate::backend::NodePool;
use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tenantry_config::BackendName;
use tokio_util::sync::CancellationToken;

/// How soon a reload's new or changed nodes get their task.
const EVERY: Duration = Duration::from_secs(1);

/// Runs `start(backend, node, stop)` for every node until `shutdown`; the
/// future must return soon after its `stop` token is cancelled.
pub async fn per_node<F, Fut>(runtime: Arc<ArcSwap<Runtime>>, shutdown: CancellationToken, start: F)
where
    F: Fn(BackendName, Arc<NodePool>, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut running: HashMap<(BackendName, String), (Arc<NodePool>, CancellationToken)> = HashMap::new();
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let rt = runtime.load_full();
        let mut wanted = HashMap::new();
        for (name, router) in &rt.backends {
            // A cluster's masters as of its current map: a failover's new
            // master gets its tasks within a tick.
            for node in router.nodes() {
                wanted.insert((name.clone(), node.addr().to_string()), node);
            }
        }
        running.retain(|key, (node, stop)| {
            let keep = wanted.get(key).is_some_and(|n| Arc::ptr_eq(n, node));
            if !keep {
                stop.cancel();
            }
            keep
        });
        for (key, node) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            let stop = shutdown.child_token();
            tokio::spawn(start(key.0.clone(), node.clone(), stop.clone()));
            running.insert(key, (node, stop));
        }
    }
}
