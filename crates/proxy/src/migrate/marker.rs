//! Marks again the keys of writes whose mark failed in their own batch (a
//! SADD refused by the old backend: out of memory, say). The write was
//! answered already; until the mark lands the barrier waits for it.

use crate::tenant::migration::{Migration, Sync};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

pub(super) async fn run(
    mut rx: mpsc::UnboundedReceiver<crate::tenant::migration::Marks>,
    sync: Arc<Sync>,
    job: Weak<Migration>,
) {
    while let Some((mut marked, mut writes)) = rx.recv().await {
        while let Ok((more, w)) = rx.try_recv() {
            marked.extend(more);
            writes += w;
        }
        marked.sort_unstable();
        marked.dedup();
        loop {
            let Some(j) = job.upgrade() else { break };
            match super::dirty::add(&j, marked.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(tenant = %j.tenant, error = %e, "cannot mark written keys for the migration; retrying");
                    drop(j);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        sync.pending.fetch_sub(writes, Ordering::SeqCst);
    }
}
