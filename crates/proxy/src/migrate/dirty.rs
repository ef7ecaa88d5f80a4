//! The dirty sets: on each node of the old backend, the keys written there
//! since the copy began (their writes' batches add them, `WriteMark`), which
//! the driver copies again.

use super::copy::node_of;
use crate::backend::NodePool;
use crate::error::Error;
use crate::tenant::migration::Migration;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use tenantry_protocol::answer;

/// Keys in every node's set.
pub(super) async fn count(job: &Migration) -> Result<u64, Error> {
    let mut n = 0;
    for node in job.source.nodes() {
        n += answer::integer(&node.call(&[b"SCARD", &job.keys.dirty_on(&node)]).await?)?.max(0) as u64;
    }
    Ok(n)
}

/// Moves up to `n` keys from the dirty set to the copying set, at once.
const TAKE: &str = "local keys = redis.call('SPOP', KEYS[1], ARGV[1]) \
    if #keys > 0 then redis.call('SADD', KEYS[2], unpack(keys)) end return keys";

/// Keys of `node`'s dirty set to copy again: first those a driver took and
/// did not finish copying (it died), else up to `n` moved from the dirty
/// set to the copying set (`done` empties it once they are copied: a key
/// written meanwhile is in the dirty set again, never lost by the move);
/// `None` when there are none. Only the tenant's own are kept: its backend
/// user may write the set (and so its scripts), and a name from outside its
/// namespace must never be copied into it on the target.
pub(super) async fn take(job: &Migration, node: &NodePool, n: u64) -> Result<Option<Vec<Bytes>>, Error> {
    let (dirty, copying) = (job.keys.dirty_on(node), job.keys.copying_on(node));
    let mut taken = answer::strings(&node.call(&[b"SMEMBERS", &copying]).await?)?;
    if taken.is_empty() {
        let n = n.to_string();
        taken = answer::strings(&node.call(&[b"EVAL", TAKE.as_bytes(), b"2", &dirty, &copying, n.as_bytes()]).await?)?;
    }
    if taken.is_empty() {
        return Ok(None);
    }
    Ok(Some(taken.into_iter().filter(|k| job.from_ns.strip(k).is_some()).map(Bytes::from).collect()))
}

/// The keys `take` gave are copied.
pub(super) async fn done(job: &Migration, node: &NodePool) -> Result<(), Error> {
    answer::integer(&node.call(&[b"DEL", &job.keys.copying_on(node)]).await?)?;
    Ok(())
}

/// Keys, and the node that holds them.
type OnNode = (Arc<NodePool>, Vec<Bytes>);

/// `keys` (old names) grouped by the node of the old backend that holds them.
fn by_node(job: &Migration, keys: Vec<Bytes>) -> Result<Vec<OnNode>, Error> {
    let mut groups: HashMap<usize, OnNode> = HashMap::new();
    for k in keys {
        let node = node_of(&job.source, &job.from_ns, &k)?;
        groups.entry(Arc::as_ptr(&node) as usize).or_insert_with(|| (node, Vec::new())).1.push(k);
    }
    Ok(groups.into_values().collect())
}

/// Marks `keys` dirty (again), each in its node's set.
pub(super) async fn add(job: &Migration, keys: Vec<Bytes>) -> Result<(), Error> {
    for (node, keys) in by_node(job, keys)? {
        let set = job.keys.dirty_on(&node);
        let mut args: Vec<&[u8]> = vec![b"SADD", &set];
        args.extend(keys.iter().map(|k| k.as_ref()));
        answer::integer(&node.call(&args).await?)?;
    }
    Ok(())
}

/// Of `keys`, those not marked dirty: a key written since it was compared
/// differs until the cut-over copies it again, and is no mismatch.
pub(super) async fn not_dirty(job: &Migration, keys: Vec<Bytes>) -> Result<Vec<Bytes>, Error> {
    let mut out = Vec::new();
    for (node, keys) in by_node(job, keys)? {
        let set = job.keys.dirty_on(&node);
        let mut args: Vec<&[u8]> = vec![b"SMISMEMBER", &set];
        args.extend(keys.iter().map(|k| k.as_ref()));
        let flags = answer::integers(&node.call(&args).await?)?;
        out.extend(keys.into_iter().zip(flags).filter(|(_, dirty)| *dirty == 0).map(|(k, _)| k));
    }
    Ok(out)
}

/// Empties every node's set.
pub(super) async fn clear(source: &crate::backend::Router, keys: &crate::tenant::migration::Keys) -> Result<(), Error> {
    for node in source.nodes() {
        answer::integer(&node.call(&[b"DEL", &keys.dirty_on(&node), &keys.copying_on(&node)]).await?)?;
    }
    Ok(())
}
