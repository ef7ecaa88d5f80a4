//! Copying keys from the old backend to the new: PTTL and DUMP of each key
//! on the node that holds it (one pipelined batch), then RESTORE ... ABSTTL
//! REPLACE of the payload under the new name on the node that is to hold
//! it, or DEL there when the key is gone from the old backend (deleted or
//! expired since it was written). A DUMP payload is one bulk string: a key
//! bigger than the target's `proto-max-bulk-len` (512 MB by default) cannot
//! be restored, and the copy fails with the target's error.

use crate::backend::{Batch, NodePool, Router};
use crate::error::{Error, Kind};
use crate::tenant::migration::Migration;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tenantry_protocol::{answer, encode, reply::split_frames, Namespace, Protocol};
use tokio::sync::oneshot;

/// What a copy moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Copied {
    pub keys: u64,
    pub bytes: u64,
}

/// One key as read from the old backend.
pub(super) struct Dumped {
    /// Its name under the old namespace.
    pub key: Bytes,
    /// `None`: no such key (any more).
    pub payload: Option<Vec<u8>>,
    /// Milliseconds left, or -1 for none.
    pub pttl: i64,
}

fn no_namespace() -> Namespace {
    Namespace::new("-").expect("valid")
}

/// Sends `count` commands in `bytes` to `node` and returns their replies.
pub(super) async fn pipeline(node: &NodePool, bytes: BytesMut, count: usize) -> Result<Vec<Bytes>, Error> {
    let rx = send(node, bytes, count);
    replies_of(node, rx, count).await
}

fn send(node: &NodePool, bytes: BytesMut, count: usize) -> oneshot::Receiver<crate::backend::BatchReply> {
    let (tx, rx) = oneshot::channel();
    node.send(0, Protocol::Resp2, Batch::new(bytes.freeze(), count, tx));
    rx
}

async fn replies_of(
    node: &NodePool,
    rx: oneshot::Receiver<crate::backend::BatchReply>,
    count: usize,
) -> Result<Vec<Bytes>, Error> {
    let replies = rx.await.map_err(|_| Error::from(node.lost()))??;
    let frames = split_frames(&replies).ok_or_else(|| Error::new(Kind::Backend, "unframed replies"))?;
    if frames.len() != count {
        return Err(Error::new(Kind::Backend, format!("{} replies for {count} commands", frames.len())));
    }
    Ok(frames)
}

/// The node of `router` that holds `key` (namespaced with `ns`).
pub(super) fn node_of(router: &Router, ns: &Namespace, key: &[u8]) -> Result<Arc<NodePool>, Error> {
    let rel = ns.strip(key).unwrap_or(key);
    Ok(router.node_at(router.place_of(ns, rel), None)?)
}

/// PTTL and DUMP of `keys`, all held by `node`.
pub(super) async fn dump(node: &NodePool, keys: &[Bytes]) -> Result<Vec<Dumped>, Error> {
    let mut bytes = BytesMut::new();
    let ns = no_namespace();
    for k in keys {
        encode::command(&mut bytes, &[&b"PTTL"[..], k], &[], &ns);
        encode::command(&mut bytes, &[&b"DUMP"[..], k], &[], &ns);
    }
    let replies = pipeline(node, bytes, keys.len() * 2).await?;
    let mut out = Vec::with_capacity(keys.len());
    for (key, pair) in keys.iter().zip(replies.chunks(2)) {
        let pttl = answer::integer(&pair[0]).map_err(|e| Error::from(e).context("PTTL"))?;
        let payload = answer::text(&pair[1]).map_err(|e| Error::from(e).context("DUMP"))?;
        out.push(Dumped { key: key.clone(), payload: payload.filter(|_| pttl != -2), pttl });
    }
    Ok(out)
}

/// The key's name on the new backend.
pub(super) fn renamed(job: &Migration, key: &[u8]) -> Vec<u8> {
    job.to_ns.prefixed(job.from_ns.strip(key).unwrap_or(key))
}

/// Redis's default `proto-max-bulk-len`, for a node that does not say.
const DEFAULT_BULK_LIMIT: u64 = 512 * 1024 * 1024;
/// How long a node's `proto-max-bulk-len` is taken as read.
const BULK_LIMIT_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// The biggest bulk string `node` takes: a RESTORE with a bigger payload is
/// a protocol error there, which closes the connection it came on (shared
/// with other tenants' requests), so it is never sent.
async fn bulk_limit(job: &Migration, node: &NodePool) -> u64 {
    let addr = node.addr().to_string();
    if let Some((limit, at)) = job.bulk_limits.lock().expect("not poisoned").get(&addr) {
        if at.elapsed() < BULK_LIMIT_FOR {
            return *limit;
        }
    }
    let read = node.call(&[b"CONFIG", b"GET", b"proto-max-bulk-len"]).await.ok();
    let limit = read
        .and_then(|r| answer::strings(&r).ok())
        .and_then(|pair| pair.get(1).and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()))
        .unwrap_or(DEFAULT_BULK_LIMIT);
    job.bulk_limits.lock().expect("not poisoned").insert(addr, (limit, std::time::Instant::now()));
    limit
}

/// Writes what `dump` read to the new backend.
pub(super) async fn restore(job: &Migration, dumped: &[Dumped]) -> Result<Copied, Error> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let ns = no_namespace();
    // Per target node: the commands, their count, and its bulk limit.
    let mut by_node: HashMap<usize, (Arc<NodePool>, BytesMut, usize, u64)> = HashMap::new();
    let mut copied = Copied::default();
    for d in dumped {
        let new_key = renamed(job, &d.key);
        let node = node_of(&job.target, &job.to_ns, &new_key)?;
        let at_node = Arc::as_ptr(&node) as usize;
        if let std::collections::hash_map::Entry::Vacant(e) = by_node.entry(at_node) {
            e.insert((node.clone(), BytesMut::new(), 0, bulk_limit(job, &node).await));
        }
        let entry = by_node.get_mut(&at_node).expect("inserted above");
        let limit = entry.3;
        match &d.payload {
            Some(payload) if payload.len() as u64 > limit => {
                *job.too_big.lock().expect("not poisoned") = Some(d.key.clone());
                return Err(Error::new(
                    Kind::Limit,
                    format!(
                        "key {:?} is {} bytes as DUMP, more than the target's proto-max-bulk-len ({limit}) on {}: \
                         stopped until the target takes it (raise its proto-max-bulk-len, or make the key smaller)",
                        String::from_utf8_lossy(&d.key),
                        payload.len(),
                        node.addr()
                    ),
                ));
            }
            Some(payload) => {
                let at = if d.pttl >= 0 { (now_ms + d.pttl).max(1).to_string() } else { "0".to_string() };
                let args: [&[u8]; 6] = [b"RESTORE", &new_key, at.as_bytes(), payload, b"ABSTTL", b"REPLACE"];
                encode::command(&mut entry.1, &args, &[], &ns);
                copied.keys += 1;
                copied.bytes += payload.len() as u64;
            }
            None => encode::command(&mut entry.1, &[&b"DEL"[..], &new_key], &[], &ns),
        }
        entry.2 += 1;
    }
    // Sent to every node before any reply is awaited.
    let sent: Vec<_> =
        by_node.into_values().map(|(node, bytes, count, _)| (send(&node, bytes, count), node, count)).collect();
    for (rx, node, count) in sent {
        for r in replies_of(&node, rx, count).await? {
            if r.first() == Some(&b'-') {
                let text = String::from_utf8_lossy(&r[1..]).trim_end().to_string();
                return Err(Error::new(Kind::Backend, format!("{} refused the copy: {text}", node.addr())));
            }
        }
    }
    Ok(copied)
}

/// Copies `keys` (old names), grouped by the old node that holds them.
pub(super) async fn copy_keys(job: &Migration, keys: &[Bytes]) -> Result<Copied, Error> {
    let mut by_node: HashMap<usize, (Arc<NodePool>, Vec<Bytes>)> = HashMap::new();
    for k in keys {
        let node = node_of(&job.source, &job.from_ns, k)?;
        by_node.entry(Arc::as_ptr(&node) as usize).or_insert_with(|| (node, Vec::new())).1.push(k.clone());
    }
    let mut total = Copied::default();
    for (node, keys) in by_node.into_values() {
        let dumped = dump(&node, &keys).await?;
        let c = restore(job, &dumped).await?;
        total.keys += c.keys;
        total.bytes += c.bytes;
    }
    Ok(total)
}
