//! Electing one proxy among many for a node's background work, through the
//! node itself: whoever holds a lease key does the work. The holder renews it
//! well inside its expiry; when it dies the key expires and another proxy
//! takes over. No new infrastructure, and a node that is down elects nobody.

use crate::backend::NodePool;
use std::sync::Arc;

/// How long a lease lasts without renewal. Holders renew every 2 s.
const LEASE_MS: &str = "10000";

/// Takes or renews the lease if it is free or ours; 1 if we hold it.
const LEASE_SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('pexpire', KEYS[1], ARGV[2]) \
   elseif redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 else return 0 end";

/// A proxy's name in lease keys: unique among the proxies of a fleet (and
/// among several proxies in one process, as in tests).
#[derive(Debug, Clone)]
pub struct Holder(Arc<str>);

impl Holder {
    pub fn new() -> Self {
        Holder(Arc::from(format!("{}-{:016x}", std::process::id(), fastrand::u64(..))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Takes or renews the lease `key` on `node`; true if `me` holds it.
pub async fn hold(node: &NodePool, key: &[u8], me: &Holder) -> bool {
    let args: [&[u8]; 6] = [b"EVAL", LEASE_SCRIPT.as_bytes(), b"1", key, me.0.as_bytes(), LEASE_MS.as_bytes()];
    matches!(node.call(&args).await.as_deref(), Ok(b":1\r\n"))
}

/// Gives the lease up if `me` holds it, so another proxy takes over at once.
pub async fn release(node: &NodePool, key: &[u8], me: &Holder) {
    const RELEASE: &str =
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";
    let args: [&[u8]; 5] = [b"EVAL", RELEASE.as_bytes(), b"1", key, me.0.as_bytes()];
    let _ = node.call(&args).await;
}
