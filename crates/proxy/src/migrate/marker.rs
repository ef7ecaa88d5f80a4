//! Marks written keys dirty on the old backend. A write's keys come here
//! once its reply is back, so the mark lands after the write and a copy
//! made after the mark sees the write. Marks that arrive together go in one
//! SADD; the writes are counted done only once it is answered, which is
//! what the cut-over barrier waits for.

use crate::backend::Router;
use crate::tenant::migration::{Keys, Sync};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tenantry_protocol::answer;
use tokio::sync::mpsc;

/// Keys per SADD.
const CHUNK: usize = 1000;

pub(super) async fn run(
    mut rx: mpsc::UnboundedReceiver<crate::tenant::migration::Marks>,
    sync: Arc<Sync>,
    source: Arc<Router>,
    keys: Keys,
) {
    while let Some((mut marked, mut writes)) = rx.recv().await {
        while marked.len() < 4 * CHUNK {
            let Ok((more, w)) = rx.try_recv() else { break };
            marked.extend(more);
            writes += w;
        }
        marked.sort_unstable();
        marked.dedup();
        let node = keys.node(&source);
        for chunk in marked.chunks(CHUNK) {
            let mut args: Vec<&[u8]> = vec![b"SADD", &keys.dirty];
            args.extend(chunk.iter().map(|k| k.as_ref()));
            // Until it lands: the barrier waits for it, and a migration given
            // up (its sessions gone) closes the channel.
            loop {
                match node
                    .call(&args)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| answer::integer(&r).map_err(|e| e.to_string()))
                {
                    Ok(_) => break,
                    Err(e) if rx.is_closed() => {
                        tracing::debug!(error = %e, "migration gone: dropping its dirty marks");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot mark written keys for the migration; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        sync.pending.fetch_sub(writes, Ordering::SeqCst);
    }
}
