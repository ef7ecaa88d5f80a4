//! Evicting a tenant's own keys when it is over its quota, by its own
//! policy, sampled as Redis samples: for each key to evict, look at
//! `eviction_samples` random keys of the tenant and evict the best candidate
//! (longest idle, least frequently used, or soonest to expire).

use super::worker::NodeQuotas;
use crate::error::{Error, Kind};
use crate::tenant::TenantRt;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantry_config::{Eviction, MemoryQuota, TenantId};
use tenantry_protocol::answer;
use tokio_util::sync::CancellationToken;

/// Keys evicted per round at most; rounds repeat while over quota.
const MAX_PER_ROUND: u64 = 256;
/// SCAN calls spent looking for candidates in one round.
const SCAN_TRIES: usize = 8;
/// How long to leave a tenant with nothing to evict (say volatile-lru and no
/// key with a TTL) before looking again; its writes get -OOM meanwhile.
const NOTHING_TO_EVICT_BACKOFF: Duration = Duration::from_millis(250);

/// A[1] is the policy (see `eval_spread`). Returns a flag (1 if the node does not track what
/// the policy needs and idle time or frequency stood in), then for each key
/// a pair: eligible (0/1) and a score, highest evicted first.
const SCORE_SCRIPT: &str = "local policy = A[1] local out = {0} \
  local function idle(k) \
    local v = redis.pcall('object', 'idletime', k) \
    if type(v) == 'number' then return v end \
    out[1] = 1 local f = redis.pcall('object', 'freq', k) \
    if type(f) == 'number' then return 255 - f end return 0 end \
  for i, k in ipairs(K) do \
    local ok, score = 0, 0 \
    local ttl = redis.call('pttl', k) \
    if ttl ~= -2 then \
      if policy == 'allkeys-lru' then ok, score = 1, idle(k) \
      elseif policy == 'allkeys-lfu' then \
        local f = redis.pcall('object', 'freq', k) \
        if type(f) == 'number' then ok, score = 1, 255 - f else out[1] = 1 ok, score = 1, idle(k) end \
      elseif ttl > 0 and policy == 'volatile-lru' then ok, score = 1, idle(k) \
      elseif ttl > 0 and policy == 'volatile-ttl' then ok, score = 1, -ttl end \
    end \
    out[#out + 1] = ok out[#out + 1] = score \
  end return out";

/// MEMORY USAGE then UNLINK of each key: the bytes freed, or -1 if it was gone.
const EVICT_SCRIPT: &str = "local out = {} \
  for i, k in ipairs(K) do \
    local m = redis.call('memory', 'usage', k) \
    if m and redis.call('unlink', k) == 1 then out[i] = m else out[i] = -1 end \
  end return out";

pub(super) async fn run(node: Arc<NodeQuotas>, stop: CancellationToken) {
    let mut resting: HashMap<TenantId, Instant> = HashMap::new();
    loop {
        let mut evicted = 0;
        for t in node.tenants() {
            let Some(quota) = t.config.memory else { continue };
            if quota.eviction == Eviction::NoEviction || !t.quota.known() {
                continue;
            }
            let used = t.quota.used();
            if used <= quota.bytes || resting.get(&t.id).is_some_and(|until| Instant::now() < *until) {
                continue;
            }
            // Every node's evictor sees the same excess: each takes its share.
            let share = (used - quota.bytes).div_ceil(node.nodes());
            match round(&node, &t, quota, share).await {
                Ok(0) => {
                    resting.insert(t.id.clone(), Instant::now() + NOTHING_TO_EVICT_BACKOFF);
                }
                Ok(n) => evicted += n,
                Err(e) => {
                    tracing::debug!(tenant = %t.id, error = %e, "eviction round failed");
                    resting.insert(t.id.clone(), Instant::now() + NOTHING_TO_EVICT_BACKOFF);
                }
            }
        }
        // Straight on while there is work; otherwise look again shortly.
        let pause = if evicted > 0 { Duration::ZERO } else { Duration::from_millis(5) };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Evicts about `excess` bytes of the tenant's keys; returns how many keys went.
async fn round(node: &NodeQuotas, t: &TenantRt, quota: MemoryQuota, excess: u64) -> Result<u64, Error> {
    let mean = t.quota.mean_key_bytes().unwrap_or(1024).max(64);
    let n = excess.div_ceil(mean).clamp(1, MAX_PER_ROUND) as usize;
    let want = n * node.settings().eviction_samples as usize;
    let candidates = sample(node, t, want).await?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let scores = node.eval_spread(SCORE_SCRIPT, &candidates, &[quota.eviction.name().to_string()]).await?;
    if scores.len() != 1 + 2 * candidates.len() {
        return Err(Error::new(Kind::BadReply, format!("{} scores for {} keys", scores.len(), candidates.len())));
    }
    node.note(
        &format!("eviction {}", t.id),
        (scores[0] == 1).then(|| {
            format!(
                "tenant '{}' ({}) evicts by {} instead: the node's maxmemory-policy does not track what it needs",
                t.id,
                quota.eviction.name(),
                if quota.eviction == Eviction::AllKeysLfu { "idle time" } else { "access frequency" }
            )
        }),
    );
    let mut ranked: Vec<(i64, Vec<u8>)> = candidates
        .into_iter()
        .zip(scores[1..].chunks(2))
        .filter(|(_, s)| s[0] == 1)
        .map(|(key, s)| (s[1], key))
        .collect();
    ranked.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
    let chosen: Vec<Vec<u8>> = ranked.into_iter().take(n).map(|(_, k)| k).collect();
    if chosen.is_empty() {
        return Ok(0);
    }
    let freed = node.eval_spread(EVICT_SCRIPT, &chosen, &[]).await?;
    let mut bytes = 0;
    let mut count = 0;
    for (key, size) in chosen.iter().zip(freed) {
        if size < 0 {
            continue;
        }
        bytes += size;
        count += 1;
        if let Some(client_key) = t.namespace.strip(key) {
            t.metrics.keyspace(client_key).quota_evictions.inc();
        }
    }
    t.quota.add_on(node.node.addr(), -bytes);
    if count > 0 {
        t.quota.note_freed();
    }
    Ok(count)
}

/// Up to `want` distinct random keys of the tenant: SCAN from random cursors
/// (a cursor is a position in the node's hash table, so any number is one).
async fn sample(node: &NodeQuotas, t: &TenantRt, want: usize) -> Result<Vec<Vec<u8>>, Error> {
    let mut pattern = t.namespace.as_bytes().to_vec();
    pattern.push(b'*');
    let count = want.clamp(100, 1000).to_string();
    let mut found: HashSet<Bytes> = HashSet::new();
    for _ in 0..SCAN_TRIES {
        let cursor = fastrand::u64(..).to_string();
        let args: [&[u8]; 6] = [b"SCAN", cursor.as_bytes(), b"MATCH", &pattern, b"COUNT", count.as_bytes()];
        let reply = node.node.call(&args).await?;
        let (_, keys) = answer::scan_page(&reply).map_err(Error::from)?;
        found.extend(keys.into_iter().map(Bytes::from));
        if found.len() >= want {
            break;
        }
    }
    Ok(found.into_iter().take(want).map(|k| k.to_vec()).collect())
}
