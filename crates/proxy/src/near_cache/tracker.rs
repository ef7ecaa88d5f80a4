//! The near-cache's tracking connections: one per node of the tenant's
//! backend (a cluster's masters), each `CLIENT TRACKING ON BCAST PREFIX
//! <namespace>` in RESP3, so Redis pushes an invalidation for every change
//! to the tenant's keys, whoever made it. Each PINGs at a quarter of
//! `max_staleness`; the cache's horizon is the oldest tracker's last
//! answered PING. A tracker that breaks empties the cache and sets the
//! horizon to 0 (nothing served) until it is back.

use super::NearCache;
use crate::backend::{Batch, BatchReply, NodePool, Router};
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tenantry_protocol::{answer, encode, Namespace, Protocol};
use tokio::sync::{mpsc, oneshot};

/// Invalidations held for a tracker: past this the connection is closed
/// (the cache emptied) rather than invalidations lost.
const PUSH_BUFFER: usize = 4096;
/// How often the set of nodes and the hot keys are looked at again.
const SUPERVISE_EVERY: Duration = Duration::from_millis(100);
/// Hot keys the cache keeps (the sketch's top).
const HOT_KEYS: usize = 32;

/// Starts the trackers of `cache`; they stop when the cache is dropped (a
/// reload that makes a new one, or removes it).
pub fn spawn(cache: &Arc<NearCache>, router: Arc<Router>) {
    let weak = Arc::downgrade(cache);
    tokio::spawn(supervise(weak, router));
}

/// Runs a tracker per node; starts over (cache emptied) when the nodes
/// change, as when a cluster gains or loses a master.
async fn supervise(weak: Weak<NearCache>, router: Arc<Router>) {
    loop {
        let nodes = router.nodes();
        let horizons: Arc<[AtomicU64]> = nodes.iter().map(|_| AtomicU64::new(0)).collect();
        let tasks: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| tokio::spawn(track(weak.clone(), node.clone(), i, horizons.clone())))
            .collect();
        let same_nodes =
            |now: &[Arc<NodePool>]| now.len() == nodes.len() && now.iter().zip(&nodes).all(|(a, b)| Arc::ptr_eq(a, b));
        loop {
            tokio::time::sleep(SUPERVISE_EVERY).await;
            let Some(cache) = weak.upgrade() else {
                tasks.iter().for_each(|t| t.abort());
                return;
            };
            cache.refresh_hot(HOT_KEYS);
            if !same_nodes(&router.nodes()) {
                tasks.iter().for_each(|t| t.abort());
                cache.horizon_us.store(0, Ordering::Release);
                cache.clear();
                break;
            }
        }
    }
}

/// The cache's horizon: the oldest tracker's, or 0 if any is down.
fn publish(cache: &NearCache, horizons: &[AtomicU64]) {
    let oldest = horizons.iter().map(|h| h.load(Ordering::Acquire)).min().unwrap_or(0);
    cache.horizon_us.store(oldest, Ordering::Release);
}

async fn track(weak: Weak<NearCache>, node: Arc<NodePool>, me: usize, horizons: Arc<[AtomicU64]>) {
    loop {
        let Some(cache) = weak.upgrade() else { return };
        let (tx, rx) = mpsc::channel(PUSH_BUFFER);
        let conn = node.pinned(Protocol::Resp3, tx);
        let ns = cache.namespace.clone();
        let prefix = ns.as_bytes().to_vec();
        let period = cache.config.max_staleness / 4;
        drop(cache);
        let on = call(&conn, &ns, &[b"CLIENT", b"TRACKING", b"ON", b"BCAST", b"PREFIX", &prefix]).await;
        match on {
            Ok(reply) if reply.starts_with(b"+OK") => {
                let _ = call(&conn, &ns, &[b"CLIENT", b"SETNAME", b"tenantry-near-cache"]).await;
                follow(&weak, &conn, &ns, rx, period, (me, &horizons)).await;
            }
            Ok(reply) => tracing::warn!(
                node = %node.addr(),
                reply = %String::from_utf8_lossy(&reply).trim_end(),
                "near-cache: the node refused CLIENT TRACKING; nothing is served from the cache"
            ),
            Err(e) => tracing::debug!(node = %node.addr(), error = %e, "near-cache: tracking connection failed"),
        }
        horizons[me].store(0, Ordering::Release);
        let Some(cache) = weak.upgrade() else { return };
        publish(&cache, &horizons);
        cache.clear();
        drop(cache);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads invalidations and PINGs until the connection breaks.
async fn follow(
    weak: &Weak<NearCache>,
    conn: &crate::backend::ConnHandle,
    ns: &Namespace,
    mut pushes: mpsc::Receiver<Bytes>,
    period: Duration,
    (me, horizons): (usize, &[AtomicU64]),
) {
    let mut tick = tokio::time::interval(period);
    let mut ping: Option<(Instant, oneshot::Receiver<BatchReply>)> = None;
    loop {
        tokio::select! {
            push = pushes.recv() => {
                let Some(push) = push else { return };
                let Some(cache) = weak.upgrade() else { return };
                apply(&cache, &push);
            }
            _ = tick.tick(), if ping.is_none() => {
                ping = Some((Instant::now(), send(conn, ns, &[b"PING"])));
            }
            pong = async { (&mut ping.as_mut().expect("guarded").1).await }, if ping.is_some() => {
                let (sent_at, _) = ping.take().expect("guarded");
                let Some(cache) = weak.upgrade() else { return };
                // Invalidations sent before the PONG are queued ahead of it.
                while let Ok(push) = pushes.try_recv() {
                    apply(&cache, &push);
                }
                match pong {
                    Ok(Ok(reply)) if reply.starts_with(b"+PONG") => {
                        horizons[me].store(cache.micros(sent_at).max(1), Ordering::Release);
                        publish(&cache, horizons);
                    }
                    _ => return,
                }
            }
        }
    }
}

fn apply(cache: &NearCache, push: &[u8]) {
    match answer::invalidation(push) {
        Ok(Some(keys)) => keys.iter().for_each(|k| cache.invalidate(k)),
        Ok(None) => cache.clear(),
        // Not an invalidation (tracking sends no other pushes): ignored.
        Err(_) => {}
    }
}

/// The tracker's own commands: they name no key, so `ns` prefixes nothing.
fn send(conn: &crate::backend::ConnHandle, ns: &Namespace, args: &[&[u8]]) -> oneshot::Receiver<BatchReply> {
    let mut out = BytesMut::new();
    encode::command(&mut out, args, &[], ns);
    let (tx, rx) = oneshot::channel();
    conn.send(Batch::new(out.freeze(), 1, tx));
    rx
}

/// Why a tracker's command got no reply.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    #[error("the tracking connection closed")]
    Closed,
}

async fn call(conn: &crate::backend::ConnHandle, ns: &Namespace, args: &[&[u8]]) -> Result<Bytes, CallError> {
    match send(conn, ns, args).await {
        Ok(reply) => Ok(reply?),
        Err(_) => Err(CallError::Closed),
    }
}
