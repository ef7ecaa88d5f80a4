//! Deleting an old namespace generation in the background. When a tenant's
//! namespace changes (`checkout:v3:` to `checkout:v4:`), clients see an empty
//! cache at once; the keys of the old generation are then found with SCAN and
//! removed with UNLINK in small batches, at a bounded rate, so the backend is
//! never blocked for long. Progress is at the admin server's `/config`.

use crate::backend::{NodePool, Router};
use crate::runtime::Runtime;
use crate::status::{CleanupLabel, CleanupProgress, Status};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tenantry_config::{BackendName, Cleanup, TenantId};
use tenantry_protocol::Namespace;
use tokio_util::sync::CancellationToken;

pub(crate) struct Job {
    tenant: TenantId,
    backend_name: BackendName,
    backend: Arc<Router>,
    namespace: Namespace,
}

/// Old generations left behind by a reload: tenants that kept their backend
/// but changed namespace, where no tenant of the new config owns the old one.
pub(crate) fn old_generations(old: &Runtime, new: &Runtime) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (id, before) in &old.tenants {
        let Some(after) = new.tenants.get(id) else { continue };
        if after.namespace == before.namespace || after.config.backend != before.config.backend {
            continue;
        }
        let owner = new
            .tenants
            .values()
            .find(|t| t.config.backend == before.config.backend && t.namespace.overlaps(&before.namespace));
        if let Some(owner) = owner {
            tracing::warn!(tenant = %id, old = %before.namespace, owner = %owner.id,
                "old namespace overlaps a tenant of the new config: not deleting it");
            continue;
        }
        jobs.push(Job {
            tenant: id.clone(),
            backend_name: before.config.backend.clone(),
            backend: after.backend.clone(),
            namespace: before.namespace.clone(),
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
            _ = shutdown.cancelled() => Err("stopped by shutdown".into()),
        };
        status.update_cleanup(index, |c| match result {
            Ok(()) => c.done = true,
            Err(e) => c.error = Some(e),
        });
        let p = &status.cleanups()[index];
        tracing::info!(tenant = %job.tenant, namespace = %job.namespace, deleted = p.deleted, done = p.done,
            error = ?p.error, "old namespace generation cleanup finished");
    });
}

async fn run(job: &Job, rate: Cleanup, status: &Status, index: usize) -> Result<(), String> {
    // A handle, not the family's guard, which must not be held across an await.
    let counter = status
        .cleanup_deleted
        .get_or_create(&CleanupLabel { tenant: job.tenant.to_string(), namespace: job.namespace.to_string() })
        .clone();
    let pace = Some(rate.keys_per_sec);
    delete_namespace(job.backend.any_node(), &job.namespace, rate.batch, pace, |n| {
        counter.inc_by(n);
        status.update_cleanup(index, |c| c.deleted += n);
    })
    .await
    .map(|_| ())
}

/// Walks every key of `namespace` on `node` with SCAN (`batch` per page),
/// calling `page` with each page's keys.
pub(crate) async fn scan_namespace(
    node: &NodePool,
    namespace: &Namespace,
    batch: u32,
    mut page: impl AsyncPage,
) -> Result<(), String> {
    let mut pattern = namespace.as_bytes().to_vec();
    pattern.push(b'*');
    let count = batch.to_string();
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let reply = node.call(&[b"SCAN", &cursor, b"MATCH", &pattern, b"COUNT", count.as_bytes()]).await?;
        let (next, keys) = parse_scan(&reply)
            .ok_or_else(|| format!("unexpected SCAN reply: {:?}", String::from_utf8_lossy(&reply)))?;
        page.page(keys).await?;
        if next.as_ref() == b"0" {
            return Ok(());
        }
        cursor = next;
    }
}

/// What to do with each SCAN page.
pub(crate) trait AsyncPage {
    fn page(&mut self, keys: Vec<Bytes>) -> impl std::future::Future<Output = Result<(), String>>;
}

/// Deletes every key of `namespace` on `node` in UNLINKs of at most `batch`
/// keys, at most `keys_per_sec` if given; returns how many were deleted.
pub(crate) async fn delete_namespace(
    node: &NodePool,
    namespace: &Namespace,
    batch: u32,
    keys_per_sec: Option<u32>,
    progress: impl FnMut(u64),
) -> Result<u64, String> {
    struct Unlink<'a, F> {
        node: &'a NodePool,
        keys_per_sec: Option<u32>,
        progress: F,
        deleted: u64,
    }
    impl<F: FnMut(u64)> AsyncPage for &mut Unlink<'_, F> {
        async fn page(&mut self, keys: Vec<Bytes>) -> Result<(), String> {
            if keys.is_empty() {
                return Ok(());
            }
            let mut args: Vec<&[u8]> = vec![b"UNLINK"];
            args.extend(keys.iter().map(|k| k.as_ref()));
            let reply = self.node.call(&args).await?;
            if reply.first() == Some(&b'-') {
                return Err(format!("UNLINK failed: {}", String::from_utf8_lossy(&reply).trim_end()));
            }
            self.deleted += keys.len() as u64;
            (self.progress)(keys.len() as u64);
            if let Some(rate) = self.keys_per_sec {
                tokio::time::sleep(Duration::from_secs_f64(keys.len() as f64 / f64::from(rate))).await;
            }
            Ok(())
        }
    }
    let mut u = Unlink { node, keys_per_sec, progress, deleted: 0 };
    scan_namespace(node, namespace, batch, &mut u).await?;
    Ok(u.deleted)
}

/// Counts the keys of `namespace` on `node` (a full SCAN: slow on big backends).
pub(crate) async fn count_namespace(node: &NodePool, namespace: &Namespace, batch: u32) -> Result<u64, String> {
    struct Count(u64);
    impl AsyncPage for &mut Count {
        async fn page(&mut self, keys: Vec<Bytes>) -> Result<(), String> {
            self.0 += keys.len() as u64;
            Ok(())
        }
    }
    let mut c = Count(0);
    scan_namespace(node, namespace, batch, &mut c).await?;
    Ok(c.0)
}

/// `*2 $cursor *N $key...` into the cursor and the keys.
pub(crate) fn parse_scan(reply: &Bytes) -> Option<(Bytes, Vec<Bytes>)> {
    let mut pos = 0;
    let header = |pos: &mut usize, kind: u8| -> Option<i64> {
        let rest = reply.get(*pos..)?;
        if rest.first() != Some(&kind) {
            return None;
        }
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let n = tenantry_protocol::num::parse_i64(&rest[1..end])?;
        *pos += end + 2;
        Some(n)
    };
    let bulk = |pos: &mut usize| -> Option<Bytes> {
        let n = usize::try_from(header(pos, b'$')?).ok()?;
        if *pos + n + 2 > reply.len() {
            return None;
        }
        let b = reply.slice(*pos..*pos + n);
        *pos += n + 2;
        Some(b)
    };
    if header(&mut pos, b'*')? != 2 {
        return None;
    }
    let cursor = bulk(&mut pos)?;
    let n = header(&mut pos, b'*')?;
    let keys = (0..n).map(|_| bulk(&mut pos)).collect::<Option<Vec<_>>>()?;
    Some((cursor, keys))
}

#[cfg(test)]
mod tests {
    use super::parse_scan;
    use bytes::Bytes;

    #[test]
    fn parses_scan_replies() {
        let r = Bytes::from_static(b"*2\r\n$2\r\n17\r\n*2\r\n$3\r\nv1a\r\n$3\r\nv1b\r\n");
        let (cursor, keys) = parse_scan(&r).unwrap();
        assert_eq!(cursor, "17");
        assert_eq!(keys, vec!["v1a", "v1b"]);
        assert!(parse_scan(&Bytes::from_static(b"-ERR no\r\n")).is_none());
    }
}
