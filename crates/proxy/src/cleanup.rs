//! Deleting an old namespace generation in the background. When a tenant's
//! namespace changes (`checkout:v3:` to `checkout:v4:`), clients see an empty
//! cache at once; the keys of the old generation are then found with SCAN and
//! removed with UNLINK in small batches, at a bounded rate, so the backend is
//! never blocked for long. Progress is at the admin server's `/config`.

use crate::backend::{NodePool, Router};
use crate::error::{Error, Kind};
use crate::runtime::Runtime;
use crate::status::{CleanupLabel, CleanupProgress, Status};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tenantry_config::{BackendName, Cleanup, ConfigDiff, TenantId};
use tenantry_protocol::{answer, Namespace};
use tokio_util::sync::CancellationToken;

pub(crate) struct Job {
    tenant: TenantId,
    backend_name: BackendName,
    backend: Arc<Router>,
    namespace: Namespace,
}

/// Old generations left behind by a reload: tenants that kept their backend
/// but changed namespace, where no tenant of the new config owns the old one.
pub(crate) fn old_generations(new: &Runtime, diff: &ConfigDiff) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (id, moved) in &diff.moves {
        // Keys that moved to another backend are that backend's to fill;
        // the old one's are left (there is no copying between backends).
        let (Some(old), None) = (&moved.old_namespace, &moved.old_backend) else { continue };
        let Some(after) = new.tenants.get(id) else { continue };
        let backend = &after.config.backend;
        let owner = new.tenants.values().find(|t| &t.config.backend == backend && t.namespace.overlaps(old));
        if let Some(owner) = owner {
            tracing::warn!(tenant = %id, old = %old, owner = %owner.id,
                "old namespace overlaps a tenant of the new config: not deleting it");
            continue;
        }
        jobs.push(Job {
            tenant: id.clone(),
            backend_name: backend.clone(),
            // The backend's own connections: a tenant's own user may not reach its old namespace.
            backend: new.backends[backend].clone(),
            namespace: old.clone(),
        });
    }
    jobs
}

pub(crate) fn spawn(job: Job, rate: Cleanup, status: Arc<Status>, shutdown: CancellationToken) {
    let index = status.add_cleanup(CleanupProgress {
        tenant: job.tenant.to_string(),
        backend: job.backend_name.to_string(),
        namespace: job.namespace.to_string(),
        ..Default::default()
    });
    tracing::info!(tenant = %job.tenant, namespace = %job.namespace, "deleting the old namespace generation");
    tokio::spawn(async move {
        let result = tokio::select! {
            r = run(&job, rate, &status, index) => r,
            _ = shutdown.cancelled() => Err(Error::new(Kind::Shutdown, "stopped by shutdown")),
        };
        status.update_cleanup(index, |c| match result {
            Ok(()) => c.done = true,
            Err(e) => c.error = Some(e.to_string()),
        });
        let p = &status.cleanups()[index];
        tracing::info!(tenant = %job.tenant, namespace = %job.namespace, deleted = p.deleted, done = p.done,
            error = ?p.error, "old namespace generation cleanup finished");
    });
}

async fn run(job: &Job, rate: Cleanup, status: &Status, index: usize) -> Result<(), Error> {
    // A handle, not the family's guard, which must not be held across an await.
    let counter = status
        .cleanup_deleted
        .get_or_create(&CleanupLabel { tenant: job.tenant.to_string(), namespace: job.namespace.to_string() })
        .clone();
    let pace = Some(rate.keys_per_sec);
    for node in job.backend.nodes() {
        delete_namespace(&node, &job.namespace, rate.batch, pace, |n| {
            counter.inc_by(n);
            status.update_cleanup(index, |c| c.deleted += n);
        })
        .await?;
    }
    Ok(())
}

/// The keys of one namespace on one node, a SCAN page at a time.
pub(crate) struct NamespaceScan<'a> {
    node: &'a NodePool,
    pattern: Vec<u8>,
    count: String,
    /// `None` once SCAN has come back to cursor 0.
    cursor: Option<Bytes>,
}

/// The SCAN pattern of a namespace's keys; `None`: every key of the node.
pub(crate) fn match_pattern(namespace: Option<&Namespace>) -> Vec<u8> {
    namespace.map_or_else(Vec::new, |ns| {
        let mut pattern = ns.as_bytes().to_vec();
        pattern.push(b'*');
        pattern
    })
}

impl<'a> NamespaceScan<'a> {
    /// Pages of about `batch` keys, from `cursor` (`"0"`: a full iteration)
    /// to the end of the keyspace.
    pub(crate) fn new(node: &'a NodePool, namespace: &Namespace, batch: u32, cursor: Bytes) -> Self {
        NamespaceScan { node, pattern: match_pattern(Some(namespace)), count: batch.to_string(), cursor: Some(cursor) }
    }

    /// Every key of the node, whoever's it is.
    pub(crate) fn all_keys(node: &'a NodePool, batch: u32) -> Self {
        NamespaceScan { node, pattern: match_pattern(None), count: batch.to_string(), cursor: Some(Bytes::from("0")) }
    }

    /// Where a later scan resumes (`None`: the iteration is over).
    pub(crate) fn cursor(&self) -> Option<&Bytes> {
        self.cursor.as_ref()
    }

    /// The next page's keys (often none: SCAN filters after reading), or
    /// `None` when the iteration is over.
    pub(crate) async fn next_page(&mut self) -> Result<Option<Vec<Bytes>>, Error> {
        let Some(cursor) = self.cursor.take() else { return Ok(None) };
        let full: [&[u8]; 6] = [b"SCAN", &cursor, b"MATCH", &self.pattern, b"COUNT", self.count.as_bytes()];
        let unfiltered: [&[u8]; 4] = [b"SCAN", &cursor, b"COUNT", self.count.as_bytes()];
        let args: &[&[u8]] = if self.pattern.is_empty() { &unfiltered } else { &full };
        let reply = self.node.call(args).await?;
        let (next, keys) = answer::scan_page(&reply).map_err(|e| Error::from(e).context("SCAN"))?;
        self.cursor = (next != b"0").then(|| Bytes::from(next));
        Ok(Some(keys.into_iter().map(Bytes::from).collect()))
    }
}

/// Deletes every key of `namespace` on `node` in UNLINKs of at most `batch`
/// keys, at most `keys_per_sec` if given; returns how many were deleted.
pub(crate) async fn delete_namespace(
    node: &NodePool,
    namespace: &Namespace,
    batch: u32,
    keys_per_sec: Option<u32>,
    mut progress: impl FnMut(u64),
) -> Result<u64, Error> {
    let mut scan = NamespaceScan::new(node, namespace, batch, Bytes::from_static(b"0"));
    let mut deleted = 0;
    while let Some(keys) = scan.next_page().await? {
        if keys.is_empty() {
            continue;
        }
        for group in node.key_groups(&keys) {
            let mut args: Vec<&[u8]> = vec![b"UNLINK"];
            args.extend(group.iter().map(|k| k.as_ref()));
            let reply = node.call(&args).await?;
            answer::integer(&reply).map_err(|e| Error::from(e).context("UNLINK failed"))?;
        }
        deleted += keys.len() as u64;
        progress(keys.len() as u64);
        if let Some(rate) = keys_per_sec {
            tokio::time::sleep(Duration::from_secs_f64(keys.len() as f64 / f64::from(rate))).await;
        }
    }
    Ok(deleted)
}

/// Counts the keys of `namespace` on `node` (a full SCAN: slow on big backends).
pub(crate) async fn count_namespace(node: &NodePool, namespace: &Namespace, batch: u32) -> Result<u64, Error> {
    let mut scan = NamespaceScan::new(node, namespace, batch, Bytes::from_static(b"0"));
    let mut count = 0;
    while let Some(keys) = scan.next_page().await? {
        count += keys.len() as u64;
    }
    Ok(count)
}

/// Keys, keys with a TTL, and their mean remaining TTL in ms: INFO keyspace's
/// `db0:keys=..,expires=..,avg_ttl=..` for one namespace.
pub(crate) async fn keyspace_stats(
    node: &NodePool,
    namespace: &Namespace,
    batch: u32,
) -> Result<(u64, u64, u64), Error> {
    const TTLS: &str = "local n, sum = 0, 0 for _, k in ipairs(KEYS) do local t = redis.call('pttl', k) \
        if t > 0 then n = n + 1 sum = sum + t end end return {n, sum}";
    let mut scan = NamespaceScan::new(node, namespace, batch, Bytes::from_static(b"0"));
    let (mut keys, mut expires, mut ttl_sum) = (0u64, 0u64, 0u64);
    while let Some(page) = scan.next_page().await? {
        if page.is_empty() {
            continue;
        }
        keys += page.len() as u64;
        for group in node.key_groups(&page) {
            let count = group.len().to_string();
            let mut args: Vec<&[u8]> = vec![b"EVAL", TTLS.as_bytes(), count.as_bytes()];
            args.extend(group.iter().map(|k| k.as_ref()));
            let reply = node.call(&args).await?;
            // A backend that refuses the script (a user without EVAL) leaves
            // the TTL figures at zero; the key count stands.
            if let Ok([n, sum]) = answer::integers(&reply).as_deref() {
                expires += (*n).max(0) as u64;
                ttl_sum += (*sum).max(0) as u64;
            }
        }
    }
    Ok((keys, expires, ttl_sum.checked_div(expires).unwrap_or(0)))
}
