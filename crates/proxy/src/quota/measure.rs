//! Measuring each tenant's memory on a node: one SCAN over the whole
//! keyspace serves every tenant; a sample of each tenant's keys is sized with
//! MEMORY USAGE; the figures go back to the node for every proxy to read.

use super::worker::NodeQuotas;
use crate::cleanup::NamespaceScan;
use crate::error::{Error, Kind};
use crate::tenant::figures_key;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The shortest time between the starts of two passes over a small keyspace.
const MIN_PASS: Duration = Duration::from_millis(500);

/// Each namespace's delta and churn before the pass started.
const DELTAS_SCRIPT: &str = "local out = {} \
  for i, k in ipairs(KEYS) do \
    local v = redis.call('hmget', k, 'delta', 'churn') \
    out[2 * i - 1] = tonumber(v[1]) or 0 out[2 * i] = tonumber(v[2]) or 0 \
  end return out";

/// MEMORY USAGE and PTTL of each key (-1 and -2 for keys gone since SCAN
/// saw them): the sample gives the tenant's size and its keys with a TTL.
const SIZES_SCRIPT: &str = "local out = {} \
  for i, k in ipairs(K) do \
    out[2 * i - 1] = redis.call('memory', 'usage', k) or -1 \
    out[2 * i] = redis.call('pttl', k) \
  end return out";

/// Stores each namespace's figures (ARGV per key: the pass's estimate,
/// keys, keys with a TTL, their mean TTL in ms, and the delta and churn
/// before the pass) and takes the delta the pass has accounted for out of
/// the running one; what was written during the pass stays in it.
///
/// A pass takes a while, and keys written or freed meanwhile are counted by
/// it or not depending on whether SCAN had passed them: its figure (the
/// estimate plus the delta during the pass) is off by at most the bytes
/// written and freed meanwhile (the churn). The running figure (the last
/// one plus every delta since, exact for the writes and evictions it
/// counts) is kept while it lies within that much of the pass's, and
/// brought to the nearest bound otherwise: without churn the pass's figure
/// is taken as it is; with a tenant whose keys turn over faster than a pass
/// runs (a flood at its quota), a pass that missed most of its keys cannot
/// make it look small.
const STORE_SCRIPT: &str = "for i, k in ipairs(KEYS) do \
    local a = 6 * (i - 1) \
    local v = redis.call('hmget', k, 'measured', 'delta', 'churn') \
    local old, d1, c1 = tonumber(v[1]) or -1, tonumber(v[2]) or 0, tonumber(v[3]) or 0 \
    local d0, c0 = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]) \
    local during = d1 - d0 \
    local figure = tonumber(ARGV[a + 1]) + during \
    if old >= 0 then \
      local running, slack = old + d1, c1 - c0 \
      figure = math.min(math.max(running, figure - slack), figure + slack) \
    end \
    redis.call('hset', k, 'measured', math.max(figure - during, 0), 'keys', ARGV[a + 2], 'expires', ARGV[a + 3], \
      'avg_ttl', ARGV[a + 4]) \
    if d0 ~= 0 then redis.call('hincrby', k, 'delta', -d0) end \
  end return {}";

pub(super) async fn run(node: Arc<NodeQuotas>, stop: CancellationToken) {
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = pass(&node) => r,
            _ = stop.cancelled() => return,
        };
        node.note("measuring", result.err().map(|e| format!("tenants' memory use is not measured: {e}")));
        tokio::select! {
            _ = tokio::time::sleep_until((started + MIN_PASS).into()) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Tally {
    keys: u64,
    sampled: u64,
    sampled_bytes: u64,
    /// Sampled keys with a TTL, and the sum of their TTLs in ms.
    sampled_expiring: u64,
    sampled_ttl_ms: u64,
}

impl Tally {
    /// Keys with a TTL, from the sample's share of them.
    fn expires(&self) -> u64 {
        if self.sampled == 0 {
            return 0;
        }
        (self.sampled_expiring as f64 / self.sampled as f64 * self.keys as f64).round() as u64
    }

    /// The mean TTL of the sampled keys that have one, in ms (INFO's avg_ttl).
    fn avg_ttl_ms(&self) -> u64 {
        self.sampled_ttl_ms.checked_div(self.sampled_expiring).unwrap_or(0)
    }

    /// Mean sampled size times key count.
    fn estimate(&self) -> u64 {
        if self.sampled == 0 {
            return 0;
        }
        (self.sampled_bytes as f64 / self.sampled as f64 * self.keys as f64).round() as u64
    }
}

async fn pass(node: &NodeQuotas) -> Result<(), Error> {
    let tenants = node.tenants();
    if tenants.is_empty() {
        return Ok(());
    }
    let settings = node.settings();
    let hashes: Vec<Vec<u8>> = tenants.iter().map(|t| node.node.local_key(&figures_key(&t.namespace))).collect();
    let before = node.eval(DELTAS_SCRIPT, &hashes, &[]).await?;
    if before.len() != 2 * hashes.len() {
        return Err(Error::new(Kind::BadReply, format!("{} deltas for {} tenants", before.len(), hashes.len())));
    }

    let mut tally = vec![Tally::default(); tenants.len()];
    let rate = u64::from(settings.scan_keys_per_sec);
    let batch = (settings.scan_keys_per_sec / 10).clamp(10, 1000);
    let began = Instant::now();
    let mut visited = 0u64;
    let mut scan = NamespaceScan::all_keys(&node.node, batch);
    while let Some(page) = scan.next_page().await? {
        let mut sample = Vec::new();
        let mut owners = Vec::new();
        for key in page {
            let Some(i) = tenants.iter().position(|t| t.namespace.strip(&key).is_some()) else { continue };
            let t = &mut tally[i];
            // The first key of each tenant is always sampled.
            if t.keys % u64::from(settings.sample_one_in) == 0 {
                sample.push(key.to_vec());
                owners.push(i);
            }
            t.keys += 1;
        }
        if !sample.is_empty() {
            let sizes = node.eval_spread(SIZES_SCRIPT, &sample, &[]).await?;
            if sizes.len() != 2 * sample.len() {
                return Err(Error::new(Kind::BadReply, format!("{} sizes for {} keys", sizes.len(), sample.len())));
            }
            for (&i, pair) in owners.iter().zip(sizes.chunks(2)) {
                let (size, ttl) = (pair[0], pair[1]);
                if size >= 0 {
                    let t = &mut tally[i];
                    t.sampled += 1;
                    t.sampled_bytes += size as u64;
                    if ttl >= 0 {
                        t.sampled_expiring += 1;
                        t.sampled_ttl_ms += ttl as u64;
                    }
                } else {
                    tally[i].keys = tally[i].keys.saturating_sub(1);
                }
            }
        }
        // Paced by SCAN's own unit of work, whether or not keys matched.
        visited += u64::from(batch);
        let due = began + Duration::from_secs_f64(visited as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
    }

    let mut argv = Vec::with_capacity(6 * tenants.len());
    for (t, d) in tally.iter().zip(before.chunks(2)) {
        let figures = [t.estimate(), t.keys, t.expires(), t.avg_ttl_ms()];
        argv.extend(figures.iter().map(u64::to_string).chain([d[0].to_string(), d[1].to_string()]));
    }
    node.eval(STORE_SCRIPT, &hashes, &argv).await?;
    for (t, figures) in tenants.iter().zip(&tally) {
        tracing::debug!(tenant = %t.id, keys = figures.keys, sampled = figures.sampled, bytes = figures.estimate(),
            seconds = began.elapsed().as_secs_f64(), "measured memory");
    }
    Ok(())
}
