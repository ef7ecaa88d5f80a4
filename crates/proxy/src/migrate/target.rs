//! A mark on each node of the target, planted when a move begins: a node
//! that restarts empty (no persistence, a failover to a replica that had
//! not caught up) loses the copies made there, and its mark with them, so
//! the driver sees it and copies again from the start instead of cutting
//! over to a target that misses keys.

use crate::backend::Router;
use crate::error::Error;
use crate::tenant::migration::{Keys, Migration};
use tenantry_protocol::answer;

/// The mark's name on one node (with a hash tag of a slot it serves).
fn mark(keys: &Keys, node: &crate::backend::NodePool) -> Vec<u8> {
    node.local_key(&keys.target_mark())
}

/// Plants the mark (`started`: the move's start, which tells moves apart).
pub(super) async fn plant(job: &Migration, started: &[u8]) -> Result<(), Error> {
    for node in job.target.nodes() {
        let reply = node.call(&[b"SET", &mark(&job.keys, &node), started]).await?;
        if !reply.starts_with(b"+") {
            let text = String::from_utf8_lossy(&reply).trim_end().to_string();
            return Err(Error::new(
                crate::error::Kind::Refused,
                format!("{} refused the migration's mark: {text}", node.addr()),
            ));
        }
    }
    Ok(())
}

/// Whether every node of the target still has the mark of this move.
pub(super) async fn intact(job: &Migration, started: &[u8]) -> Result<bool, Error> {
    for node in job.target.nodes() {
        let reply = node.call(&[b"GET", &mark(&job.keys, &node)]).await?;
        if answer::text(&reply)?.as_deref() != Some(started) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes the marks (the move is over, or aborted).
pub(super) async fn remove(target: &Router, keys: &Keys) {
    for node in target.nodes() {
        if let Err(e) = node.call(&[b"DEL", &mark(keys, &node)]).await {
            tracing::warn!(error = %e, node = %node.addr(), "cannot delete the migration's mark on the target");
        }
    }
}
