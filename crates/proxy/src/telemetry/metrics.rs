//! Per-tenant metrics. Families live in one registry; each tenant keeps its
//! own handles (looked up once, then cached), so counting a command costs an
//! atomic add and, for a new label value, one map lookup.

use super::latency::LatencyHistogram;
use super::ErrorKind;
use heavykeeper::TopK;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub tenant: String,
    pub command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub tenant: String,
    pub kind: &'static str,
}

/// `limit`: `hard` or `soft` (over the soft limit for too long).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputLimitLabels {
    pub tenant: String,
    pub limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyspaceLabels {
    pub tenant: String,
    pub keyspace: String,
}

/// Evictions have a reason: `maxmemory` (the backend's own policy) or
/// `quota` (tenantry enforcing the tenant's memory quota).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvictionLabels {
    pub tenant: String,
    pub keyspace: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HotKeyLabels {
    pub tenant: String,
    pub rank: u32,
    pub key: String,
}

/// A cluster backend's event: `moved`, `ask` (redirections followed),
/// `refreshed`, `refresh_failed` (slot map reads).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterEventLabels {
    pub backend: String,
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MigrationPhaseLabels {
    pub tenant: String,
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub backend: String,
    pub node: String,
}

/// Each tenant's busiest keyspaces (by a heavy-hitter sketch) get their own
/// label; the rest are counted as `other`.
pub const MAX_KEYSPACES: usize = 50;
/// Hot-key tracking samples one command in this many.
const HOT_SAMPLE: u32 = 8;
/// Commands on a labelled keyspace feed the busiest-keyspace sketch one in this many.
const KEYSPACE_SAMPLE: u32 = 8;
/// Label sets kept per tenant at most (keyspaces that were once among the
/// busiest keep theirs); beyond it, newcomers are counted as `other`.
const MAX_KEYSPACE_LABELS: usize = 4 * MAX_KEYSPACES;
/// A keyspace longer than this (a key without `:` is its own keyspace) is
/// counted as `other`, so no label holds a client's long key.
const MAX_KEYSPACE_LABEL_BYTES: usize = 64;
/// Hot keys are shown in their label up to this many bytes.
const MAX_HOT_KEY_LABEL_BYTES: usize = 128;

/// Every metric family tenantry exports about tenants and backends.
#[derive(Default)]
pub struct Families {
    pub commands: Family<CommandLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub latency: Family<TenantLabel, LatencyHistogram>,
    pub hits: Family<KeyspaceLabels, Counter>,
    pub misses: Family<KeyspaceLabels, Counter>,
    pub evictions: Family<EvictionLabels, Counter>,
    pub memory_used: Family<TenantLabel, Gauge>,
    pub memory_quota: Family<TenantLabel, Gauge>,
    pub quota_refused: Family<TenantLabel, Counter>,
    pub expirations: Family<KeyspaceLabels, Counter>,
    pub big_values: Family<KeyspaceLabels, Counter>,
    pub hot_keys: Family<HotKeyLabels, Gauge>,
    pub bytes_in: Family<TenantLabel, Counter>,
    pub bytes_out: Family<TenantLabel, Counter>,
    pub connections: Family<TenantLabel, Gauge>,
    pub output_limit_disconnects: Family<OutputLimitLabels, Counter>,
    /// Reads answered with the reply of an identical read in flight.
    pub coalesced: Family<TenantLabel, Counter>,
    pub near_cache_hits: Family<KeyspaceLabels, Counter>,
    pub near_cache_misses: Family<KeyspaceLabels, Counter>,
    pub near_cache_evictions: Family<TenantLabel, Counter>,
    pub near_cache_invalidations: Family<TenantLabel, Counter>,
    pub near_cache_bytes: Family<TenantLabel, Gauge>,
    pub migration_phase: Family<MigrationPhaseLabels, Gauge>,
    pub migration_keys: Family<TenantLabel, Gauge>,
    pub migration_bytes: Family<TenantLabel, Gauge>,
    pub migration_recopied: Family<TenantLabel, Gauge>,
    pub migration_left: Family<TenantLabel, Gauge>,
    /// TLS handshakes with clients that failed or timed out, by listener.
    pub tls_handshake_failures: Family<ListenerLabel, Counter>,
    pub backend_used_memory: Family<NodeLabels, Gauge>,
    pub backend_maxmemory: Family<NodeLabels, Gauge>,
    pub backend_evicted_keys: Family<NodeLabels, Gauge>,
    pub backend_expired_keys: Family<NodeLabels, Gauge>,
    pub backend_connected_clients: Family<NodeLabels, Gauge>,
    pub backend_up: Family<NodeLabels, Gauge>,
    pub cluster_events: Family<ClusterEventLabels, Counter>,
    pub cluster_masters: Family<BackendLabel, Gauge>,
    /// 1 on the proxy that reports a node's evictions and expirations.
    pub event_reporter: Family<NodeLabels, Gauge>,
}

impl Families {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&self, r: &mut Registry) {
        let p = r.sub_registry_with_prefix("tenantry");
        p.register("commands", "Commands by tenant and command name", self.commands.clone());
        p.register(
            "command_errors",
            "Error replies by tenant and kind (the error code, or refused, rate_limited, backend_unavailable)",
            self.errors.clone(),
        );
        p.register(
            "command_duration_seconds",
            "Time from a command's batch being sent to its reply",
            self.latency.clone(),
        );
        p.register("keyspace_hits", "Read commands that found their key, by keyspace", self.hits.clone());
        p.register("keyspace_misses", "Read commands that did not find their key, by keyspace", self.misses.clone());
        p.register(
            "evictions",
            "Keys evicted, by the tenant and keyspace they belonged to and reason: maxmemory (the backend's \
             policy) or quota (tenantry keeping the tenant within its memory_quota)",
            self.evictions.clone(),
        );
        p.register(
            "tenant_memory_used_bytes",
            "The tenant's memory on its backend, as every proxy of the backend sees it (a gauge: do not sum)",
            self.memory_used.clone(),
        );
        p.register("tenant_memory_quota_bytes", "The tenant's memory_quota", self.memory_quota.clone());
        p.register(
            "tenant_quota_refused_writes",
            "Writes refused with -OOM because the tenant was over its memory quota",
            self.quota_refused.clone(),
        );
        p.register("expirations", "Keys expired by the backend, by tenant and keyspace", self.expirations.clone());
        p.register(
            "big_values",
            "Written values above telemetry.big_value_bytes, by keyspace",
            self.big_values.clone(),
        );
        p.register(
            "hot_key_commands",
            "Estimated commands on each tenant's hottest keys (top 5, heavy-hitter sketch)",
            self.hot_keys.clone(),
        );
        p.register("received_bytes", "Request bytes received from clients", self.bytes_in.clone());
        p.register("sent_bytes", "Reply bytes sent to clients", self.bytes_out.clone());
        p.register("connections", "Open client connections", self.connections.clone());
        p.register(
            "client_output_limit_disconnects",
            "Clients disconnected for not reading their replies: past output_hard, or past output_soft for output_soft_seconds",
            self.output_limit_disconnects.clone(),
        );
        p.register(
            "coalesced_requests",
            "Reads answered with the reply of an identical read already in flight (coalesce), not sent to the backend",
            self.coalesced.clone(),
        );
        p.register(
            "near_cache_hits",
            "Reads of hot keys answered from the near-cache, by keyspace",
            self.near_cache_hits.clone(),
        );
        p.register(
            "near_cache_misses",
            "Reads of hot keys the near-cache did not hold (sent to the backend), by keyspace",
            self.near_cache_misses.clone(),
        );
        p.register(
            "near_cache_evictions",
            "Near-cache entries dropped to stay within near_cache.max_bytes",
            self.near_cache_evictions.clone(),
        );
        p.register(
            "near_cache_invalidations",
            "Near-cache keys dropped because the backend said they changed",
            self.near_cache_invalidations.clone(),
        );
        p.register("near_cache_bytes", "Bytes the near-cache holds", self.near_cache_bytes.clone());
        p.register(
            "migration_phase",
            "1 for the phase a tenant's migration is in (copy, verify, switch, cut, done), 0 for the others",
            self.migration_phase.clone(),
        );
        p.register(
            "migration_copied_keys",
            "Keys the tenant's migration has copied to the target in its backfill",
            self.migration_keys.clone(),
        );
        p.register(
            "migration_copied_bytes",
            "DUMP payload bytes the tenant's migration has copied in its backfill",
            self.migration_bytes.clone(),
        );
        p.register(
            "migration_left_keys",
            "Keys the tenant's migration has still to copy (not reached by the backfill, or written since their copy)",
            self.migration_left.clone(),
        );
        p.register(
            "migration_recopied_keys",
            "Keys copied again because they were written during the migration",
            self.migration_recopied.clone(),
        );
        p.register(
            "tls_handshake_failures",
            "TLS handshakes with clients that failed (a certificate refused, a plain-text client, a timeout)",
            self.tls_handshake_failures.clone(),
        );
        p.register("backend_used_memory_bytes", "used_memory from the node's INFO", self.backend_used_memory.clone());
        p.register("backend_maxmemory_bytes", "maxmemory from the node's INFO", self.backend_maxmemory.clone());
        p.register(
            "backend_evicted_keys",
            "evicted_keys from the node's INFO (all tenants)",
            self.backend_evicted_keys.clone(),
        );
        p.register(
            "backend_expired_keys",
            "expired_keys from the node's INFO (all tenants)",
            self.backend_expired_keys.clone(),
        );
        p.register(
            "backend_connected_clients",
            "connected_clients from the node's INFO",
            self.backend_connected_clients.clone(),
        );
        p.register("backend_up", "1 if the node answered its last INFO", self.backend_up.clone());
        p.register(
            "cluster_events",
            "A cluster backend's redirections followed (event=moved|ask) and slot map reads (refreshed|refresh_failed)",
            self.cluster_events.clone(),
        );
        p.register("cluster_masters", "Masters in a cluster backend's slot map", self.cluster_masters.clone());
        p.register(
            "event_reporter",
            "1 if this proxy reports the node's evictions and expirations",
            self.event_reporter.clone(),
        );
    }
}

/// A cluster backend's handles.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    pub moved: Counter,
    pub ask: Counter,
    pub refreshed: Counter,
    pub refresh_failed: Counter,
    pub masters: Gauge,
}

impl ClusterMetrics {
    pub fn new(families: &Families, backend: &str) -> Self {
        let event = |event| {
            families.cluster_events.get_or_create(&ClusterEventLabels { backend: backend.to_string(), event }).clone()
        };
        ClusterMetrics {
            moved: event("moved"),
            ask: event("ask"),
            refreshed: event("refreshed"),
            refresh_failed: event("refresh_failed"),
            masters: families.cluster_masters.get_or_create(&BackendLabel { backend: backend.to_string() }).clone(),
        }
    }
}

/// One tenant's handles; kept across reloads, like its connection count.
pub struct TenantMetrics {
    tenant: String,
    families: Arc<Families>,
    commands: Mutex<HashMap<&'static str, Counter>>,
    /// By `ErrorKind::index`, each made on first use.
    errors: Box<[std::sync::OnceLock<Counter>]>,
    /// Shared, not copied: a read takes its keyspace's counters with one count.
    keyspaces: Mutex<HashMap<Vec<u8>, Arc<KeyspaceCounters>>>,
    busiest: Mutex<TopK<Vec<u8>>>,
    hot: Mutex<TopK<Vec<u8>>>,
    pub latency: LatencyHistogram,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub connections: Gauge,
    /// Made on the first measurement (and the quota for tenants that have
    /// one): a gauge that was never set would read 0.
    memory_used: std::sync::OnceLock<Gauge>,
    memory_quota: std::sync::OnceLock<Gauge>,
    pub quota_refused: Counter,
    pub coalesced: Counter,
    /// `ops_per_sec`'s last look (when, the command total then) and rate.
    ops: Mutex<(Option<(std::time::Instant, u64)>, u64)>,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Totals {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub quota_evictions: u64,
    pub expirations: u64,
}

/// Hit, miss, eviction and expiration counters of one keyspace.
#[derive(Clone, Debug)]
pub struct KeyspaceCounters {
    pub hits: Counter,
    pub misses: Counter,
    /// Evicted by the backend's maxmemory policy.
    pub evictions: Counter,
    /// Evicted by tenantry to keep the tenant within its quota.
    pub quota_evictions: Counter,
    pub expirations: Counter,
    pub big_values: Counter,
    /// Near-cache (hits, misses), made on the keyspace's first lookup in a
    /// near-cache: tenants without one show no series.
    near: std::sync::OnceLock<(Counter, Counter)>,
    labels: KeyspaceLabels,
}

impl KeyspaceCounters {
    /// The keyspace's near-cache hit and miss counters.
    pub fn near_cache(&self, families: &Families) -> &(Counter, Counter) {
        self.near.get_or_init(|| {
            let hits = families.near_cache_hits.get_or_create(&self.labels).clone();
            let misses = families.near_cache_misses.get_or_create(&self.labels).clone();
            (hits, misses)
        })
    }
}

impl std::fmt::Debug for TenantMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TenantMetrics({})", self.tenant)
    }
}

impl TenantMetrics {
    pub fn new(tenant: &str, families: Arc<Families>, hot_keys: usize) -> Self {
        let t = TenantLabel { tenant: tenant.to_string() };
        let latency = families.latency.get_or_create(&t).clone();
        let bytes_in = families.bytes_in.get_or_create(&t).clone();
        let bytes_out = families.bytes_out.get_or_create(&t).clone();
        let connections = families.connections.get_or_create(&t).clone();
        let quota_refused = families.quota_refused.get_or_create(&t).clone();
        let coalesced = families.coalesced.get_or_create(&t).clone();
        TenantMetrics {
            coalesced,
            memory_used: std::sync::OnceLock::new(),
            memory_quota: std::sync::OnceLock::new(),
            quota_refused,
            latency,
            bytes_in,
            bytes_out,
            connections,
            tenant: tenant.to_string(),
            families,
            commands: Mutex::default(),
            ops: Mutex::default(),
            errors: ErrorKind::ALL.iter().map(|_| std::sync::OnceLock::new()).collect(),
            keyspaces: Mutex::default(),
            busiest: Mutex::new(TopK::new(MAX_KEYSPACES, 1024, 4, 0.9)),
            // Width and depth give a good estimate for the top few dozen keys.
            hot: Mutex::new(TopK::new(hot_keys.max(1), 2048, 4, 0.9)),
        }
    }

    /// `command` through a client's one-entry cache: a client mostly repeats
    /// one command, and a hit costs a comparison instead of a lock and a hash.
    pub fn command_cached(self: &Arc<Self>, name: &'static str, cache: &mut CommandCache) {
        if let Some((owner, last, counter)) = &cache.0 {
            // Names are table entries: the same command has the same address.
            if std::ptr::eq(*last, name) && Arc::ptr_eq(owner, self) {
                counter.inc();
                return;
            }
        }
        let counter = self.command_counter(name);
        counter.inc();
        cache.0 = Some((self.clone(), name, counter));
    }

    pub fn command(&self, name: &'static str) {
        self.command_counter(name).inc();
    }

    fn command_counter(&self, name: &'static str) -> Counter {
        let mut map = self.commands.lock().expect("not poisoned");
        map.entry(name)
            .or_insert_with(|| {
                let labels = CommandLabels { tenant: self.tenant.clone(), command: name.to_string() };
                self.families.commands.get_or_create(&labels).clone()
            })
            .clone()
    }

    pub fn error(&self, kind: ErrorKind, n: u64) {
        self.errors[kind.index()]
            .get_or_init(|| {
                let labels = ErrorLabels { tenant: self.tenant.clone(), kind: kind.label() };
                self.families.errors.get_or_create(&labels).clone()
            })
            .inc_by(n);
    }

    /// Counters of the keyspace of a client key (its first `:`-separated
    /// segment). A keyspace gets a label of its own when it is among the
    /// tenant's `MAX_KEYSPACES` busiest (while fewer than
    /// `MAX_KEYSPACE_LABELS` exist) and keeps it; the rest count as `other`.
    pub fn keyspace(&self, key: &[u8]) -> Arc<KeyspaceCounters> {
        self.keyspace_labelled(key).0
    }

    /// `keyspace`, and whether the counters are the keyspace's own label
    /// (not `other`).
    fn keyspace_labelled(&self, key: &[u8]) -> (Arc<KeyspaceCounters>, bool) {
        let ks = keyspace_of(key);
        if let Some(c) = self.keyspaces.lock().expect("not poisoned").get(ks) {
            self.count_labelled(ks);
            return (c.clone(), true);
        }
        let busy = {
            let mut top = self.busiest.lock().expect("not poisoned");
            top.add(ks, 1);
            top.contains_top_k(ks)
        };
        let mut map = self.keyspaces.lock().expect("not poisoned");
        let own = busy && map.len() < MAX_KEYSPACE_LABELS && ks.len() <= MAX_KEYSPACE_LABEL_BYTES;
        let name: &[u8] = if own { ks } else { b"other" };
        if let Some(c) = map.get(name) {
            return (c.clone(), own);
        }
        let labels =
            KeyspaceLabels { tenant: self.tenant.clone(), keyspace: String::from_utf8_lossy(name).into_owned() };
        // One statement each: a family's read guard lives to the end of its
        // statement, and a second lookup in the same family would deadlock.
        let evictions = self.families.evictions.get_or_create(&eviction(&labels, "maxmemory")).clone();
        let quota_evictions = self.families.evictions.get_or_create(&eviction(&labels, "quota")).clone();
        let c = Arc::new(KeyspaceCounters {
            hits: self.families.hits.get_or_create(&labels).clone(),
            misses: self.families.misses.get_or_create(&labels).clone(),
            evictions,
            quota_evictions,
            expirations: self.families.expirations.get_or_create(&labels).clone(),
            big_values: self.families.big_values.get_or_create(&labels).clone(),
            near: std::sync::OnceLock::new(),
            labels,
        });
        map.insert(name.to_vec(), c.clone());
        (c, own)
    }

    /// `keyspace` through a client's one-entry cache: a client mostly stays
    /// in one keyspace, and a hit costs a comparison instead of two locks
    /// and a hash. Only labelled keyspaces are cached (never `other`, which
    /// a keyspace may leave by becoming busy).
    pub fn keyspace_cached(self: &Arc<Self>, key: &[u8], cache: &mut KeyspaceCache) -> Arc<KeyspaceCounters> {
        let ks = keyspace_of(key);
        if let Some((owner, name, c)) = &cache.0 {
            if Arc::ptr_eq(owner, self) && name.as_slice() == ks {
                self.count_labelled(ks);
                return c.clone();
            }
        }
        let (c, own) = self.keyspace_labelled(key);
        if own {
            cache.0 = Some((self.clone(), ks.to_vec(), c.clone()));
        }
        c
    }

    /// A labelled keyspace still feeds the busiest-keyspace sketch (so the
    /// ranking of the others stays honest), one command in
    /// `KEYSPACE_SAMPLE`, weighted by it.
    fn count_labelled(&self, ks: &[u8]) {
        if fastrand::u32(..KEYSPACE_SAMPLE) == 0 {
            self.busiest.lock().expect("not poisoned").add(ks, u64::from(KEYSPACE_SAMPLE));
        }
    }

    /// A client of the tenant was disconnected past an output limit.
    pub fn output_limit_disconnect(&self, limit: &'static str) {
        let labels = OutputLimitLabels { tenant: self.tenant.clone(), limit };
        self.families.output_limit_disconnects.get_or_create(&labels).inc();
    }

    /// Records `n` commands answered `seconds` after their batch was sent.
    pub fn observe_latency(&self, seconds: f64, n: usize) {
        self.latency.observe(seconds, n as u64);
    }

    /// Counts a command on a client key in the heavy-hitter sketch. One
    /// command in `HOT_SAMPLE` (at random) is added, weighted by
    /// `HOT_SAMPLE`: the estimates stay unbiased, the sketch costs an eighth.
    pub fn touch(&self, key: &[u8]) {
        if fastrand::u32(..HOT_SAMPLE) == 0 {
            self.hot.lock().expect("not poisoned").add(key, u64::from(HOT_SAMPLE));
        }
    }

    pub fn memory_used(&self) -> &Gauge {
        self.memory_used.get_or_init(|| {
            self.families.memory_used.get_or_create(&TenantLabel { tenant: self.tenant.clone() }).clone()
        })
    }

    pub fn memory_quota(&self) -> &Gauge {
        self.memory_quota.get_or_init(|| {
            self.families.memory_quota.get_or_create(&TenantLabel { tenant: self.tenant.clone() }).clone()
        })
    }

    /// The near-cache's evictions and invalidations (made for tenants that
    /// have one, so others show no series; hits and misses are by keyspace).
    pub fn near_cache_counters(&self) -> [Counter; 2] {
        let t = TenantLabel { tenant: self.tenant.clone() };
        let f = &self.families;
        [&f.near_cache_evictions, &f.near_cache_invalidations].map(|family| family.get_or_create(&t).clone())
    }

    pub fn families(&self) -> &Families {
        &self.families
    }

    pub fn near_cache_bytes(&self) -> Gauge {
        self.families.near_cache_bytes.get_or_create(&TenantLabel { tenant: self.tenant.clone() }).clone()
    }

    /// The hottest keys, hottest first, with estimated command counts.
    pub fn hot_keys(&self) -> Vec<(Vec<u8>, u64)> {
        let mut v: Vec<(Vec<u8>, u64)> =
            self.hot.lock().expect("not poisoned").list().into_iter().map(|n| (n.item, n.count)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// Refreshes the top-5 hot key gauges (called when metrics are scraped).
    pub fn publish_hot_keys(&self) {
        let family = &self.families.hot_keys;
        for (rank, (key, count)) in self.hot_keys().into_iter().take(5).enumerate() {
            let labels = HotKeyLabels {
                tenant: self.tenant.clone(),
                rank: rank as u32 + 1,
                key: String::from_utf8_lossy(&key[..key.len().min(MAX_HOT_KEY_LABEL_BYTES)]).into_owned(),
            };
            family.get_or_create(&labels).set(count as i64);
        }
    }

    /// Hits, misses, evictions and expirations summed over keyspaces, for `/tenants`.
    /// Each command the tenant ran through this proxy, with its count.
    pub fn command_counts(&self) -> Vec<(&'static str, u64)> {
        let map = self.commands.lock().expect("not poisoned");
        map.iter().map(|(name, c)| (*name, c.get())).collect()
    }

    /// Error replies the tenant got, by kind.
    pub fn error_counts(&self) -> Vec<(ErrorKind, u64)> {
        ErrorKind::ALL.iter().zip(self.errors.iter()).filter_map(|(k, c)| Some((*k, c.get()?.get()))).collect()
    }

    /// Commands per second, as INFO's `instantaneous_ops_per_sec`: the rate
    /// since the previous look at least a second ago (0 at the first).
    pub fn ops_per_sec(&self, total: u64) -> u64 {
        let mut last = self.ops.lock().expect("not poisoned");
        let now = std::time::Instant::now();
        match last.0 {
            Some((at, then)) if now.duration_since(at) >= std::time::Duration::from_secs(1) => {
                last.1 = (total.saturating_sub(then) as f64 / now.duration_since(at).as_secs_f64()).round() as u64;
                last.0 = Some((now, total));
            }
            Some(_) => {}
            None => last.0 = Some((now, total)),
        }
        last.1
    }

    pub fn totals(&self) -> Totals {
        let map = self.keyspaces.lock().expect("not poisoned");
        map.values().fold(Totals::default(), |t, c| Totals {
            hits: t.hits + c.hits.get(),
            misses: t.misses + c.misses.get(),
            evictions: t.evictions + c.evictions.get(),
            quota_evictions: t.quota_evictions + c.quota_evictions.get(),
            expirations: t.expirations + c.expirations.get(),
        })
    }
}

/// A client key's keyspace: its first `:`-separated segment.
pub fn keyspace_of(key: &[u8]) -> &[u8] {
    key.split(|&b| b == b':').next().unwrap_or(key)
}

/// One client's last command's counter: see `TenantMetrics::command_cached`.
#[derive(Default)]
pub struct CommandCache(Option<(Arc<TenantMetrics>, &'static str, Counter)>);

/// One client's last labelled keyspace: see `TenantMetrics::keyspace_cached`.
#[derive(Default)]
pub struct KeyspaceCache(Option<(Arc<TenantMetrics>, Vec<u8>, Arc<KeyspaceCounters>)>);

fn eviction(k: &KeyspaceLabels, reason: &'static str) -> EvictionLabels {
    EvictionLabels { tenant: k.tenant.clone(), keyspace: k.keyspace.clone(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_busiest_keyspaces_get_labels() {
        let families = Arc::new(Families::new());
        let m = TenantMetrics::new("t", families.clone(), 5);
        // Two busy keyspaces, then hundreds of one-off ones.
        for _ in 0..1000 {
            m.keyspace(b"cart:1").hits.inc();
            m.keyspace(b"user:1").hits.inc();
        }
        for i in 0..500 {
            m.keyspace(format!("rare{i}:x").as_bytes()).hits.inc();
        }
        let labels = m.keyspaces.lock().unwrap().len();
        assert!(labels <= MAX_KEYSPACE_LABELS, "{labels} label sets");
        let get =
            |ks: &str| families.hits.get_or_create(&KeyspaceLabels { tenant: "t".into(), keyspace: ks.into() }).get();
        assert_eq!(get("cart"), 1000);
        assert_eq!(get("user"), 1000);
        assert!(get("other") > 0, "one-off keyspaces past the busiest go to other");
        let total: u64 = m.totals().hits;
        assert_eq!(total, 2500);
    }

    #[test]
    fn a_keyspace_too_long_for_a_label_is_other_however_busy() {
        let families = Arc::new(Families::new());
        let m = TenantMetrics::new("t", families.clone(), 5);
        let long = vec![b'k'; MAX_KEYSPACE_LABEL_BYTES + 1];
        for _ in 0..1000 {
            m.keyspace(&long).hits.inc();
        }
        let get =
            |ks: &str| families.hits.get_or_create(&KeyspaceLabels { tenant: "t".into(), keyspace: ks.into() }).get();
        assert_eq!(get("other"), 1000);
        assert_eq!(m.keyspaces.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_client_cache_counts_where_the_maps_count() {
        let families = Arc::new(Families::new());
        let m = Arc::new(TenantMetrics::new("t", families.clone(), 5));
        let other = Arc::new(TenantMetrics::new("u", families.clone(), 5));
        let mut cache = KeyspaceCache::default();
        for _ in 0..100 {
            m.keyspace_cached(b"cart:1", &mut cache).hits.inc();
            m.keyspace_cached(b"user:1", &mut cache).hits.inc();
            m.keyspace_cached(b"cart:2", &mut cache).hits.inc();
        }
        // Another tenant's lookup through the same cache never gets t's counters.
        other.keyspace_cached(b"cart:1", &mut cache).hits.inc();
        let get = |t: &str, ks: &str| {
            families.hits.get_or_create(&KeyspaceLabels { tenant: t.into(), keyspace: ks.into() }).get()
        };
        assert_eq!((get("t", "cart"), get("t", "user"), get("u", "cart")), (200, 100, 1));
        assert!(Arc::ptr_eq(&m.keyspace(b"cart:9"), &m.keyspace_cached(b"cart:3", &mut cache)));
    }

    #[test]
    fn a_client_cache_counts_commands_where_the_map_counts() {
        let families = Arc::new(Families::new());
        let (t, u) = (
            Arc::new(TenantMetrics::new("t", families.clone(), 5)),
            Arc::new(TenantMetrics::new("u", families.clone(), 5)),
        );
        let mut cache = CommandCache::default();
        for name in ["get", "get", "set", "get"] {
            t.command_cached(name, &mut cache);
        }
        u.command_cached("get", &mut cache);
        t.command("get");
        let get = |tenant: &str, command: &str| {
            families.commands.get_or_create(&CommandLabels { tenant: tenant.into(), command: command.into() }).get()
        };
        assert_eq!((get("t", "get"), get("t", "set"), get("u", "get")), (4, 1, 1));
    }
}
