//! The validated configuration: what the proxy runs from.

pub use crate::tls::{BackendTls, CertFiles, CertIdentity, Listener, ListenerTls};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
pub use tenantry_protocol::ttl::TtlRule;
use tenantry_protocol::{Limits, Namespace};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn new(s: &str) -> Self {
                $name(Arc::from(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A tenant's name, the key of `tenants:` in the YAML.
    TenantId
);
name_type!(
    /// A backend's name, the key of `backends:` in the YAML.
    BackendName
);
name_type!(
    /// `host:port` of one Redis node; the host may be a DNS name, resolved on connect.
    BackendAddr
);

impl BackendAddr {
    /// The host of `host:port` (an IPv6 address without its brackets).
    pub fn host(&self) -> &str {
        let host = self.as_str().rsplit_once(':').map_or(self.as_str(), |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// A password, resolved from the YAML, a file or the environment. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    pub fn new(bytes: &[u8]) -> Self {
        Secret(Arc::from(bytes))
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: Vec<Listener>,
    pub admin: Option<SocketAddr>,
    pub limits: ClientLimits,
    pub backends: BTreeMap<BackendName, Backend>,
    pub tenants: BTreeMap<TenantId, Tenant>,
    pub default_tenant: Option<TenantId>,
    pub cleanup: Cleanup,
    pub telemetry: Telemetry,
    pub quotas: QuotaSettings,
}

/// How tenants' memory use on shared backends is measured and enforced.
/// One proxy per backend node does the measuring and evicting (see the
/// proxy's `quota` module); these bound what that costs the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSettings {
    /// Keys visited per second by the measuring SCAN, over all tenants of a node.
    pub scan_keys_per_sec: u32,
    /// One key in this many of a tenant's is sized with `MEMORY USAGE`; the
    /// tenant's use is the mean size times its key count.
    pub sample_one_in: u32,
    /// Keys sampled per key evicted, as Redis's `maxmemory-samples`.
    pub eviction_samples: u32,
    /// How often each proxy shares the bytes it wrote and reads the figures.
    pub refresh: Duration,
    /// Measure every tenant of a shared backend, not only those with a
    /// `memory_quota` (who uses the memory is worth knowing either way).
    pub measure_all: bool,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        QuotaSettings {
            scan_keys_per_sec: 50_000,
            sample_one_in: 8,
            eviction_samples: 5,
            refresh: Duration::from_millis(100),
            measure_all: true,
        }
    }
}

/// A tenant's memory quota on its backend and what happens when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryQuota {
    pub bytes: u64,
    pub eviction: Eviction,
}

/// Eviction policies, named and behaving as Redis's `maxmemory-policy`, but
/// applied to one tenant's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Writes that would grow the tenant's data are refused with -OOM.
    NoEviction,
    AllKeysLru,
    AllKeysLfu,
    VolatileLru,
    VolatileTtl,
}

impl Eviction {
    pub const NAMES: [(&'static str, Eviction); 5] = [
        ("noeviction", Eviction::NoEviction),
        ("allkeys-lru", Eviction::AllKeysLru),
        ("allkeys-lfu", Eviction::AllKeysLfu),
        ("volatile-lru", Eviction::VolatileLru),
        ("volatile-ttl", Eviction::VolatileTtl),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, e)| *e == self).map_or("noeviction", |(n, _)| n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Telemetry {
    /// How many of each tenant's hottest keys are tracked (`/hotkeys`).
    pub hot_keys: usize,
    /// Written values larger than this count as big, per keyspace.
    pub big_value_bytes: usize,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry { hot_keys: 20, big_value_bytes: 1 << 20 }
    }
}

/// How fast the keys of an old namespace generation are deleted after a
/// tenant's namespace changes (say `checkout:v3:` to `checkout:v4:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleanup {
    pub keys_per_sec: u32,
    /// Keys asked for per SCAN and deleted per UNLINK.
    pub batch: u32,
}

impl Default for Cleanup {
    fn default() -> Self {
        Cleanup { keys_per_sec: 5_000, batch: 500 }
    }
}

/// Bounds on each client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    pub protocol: Limits,
    /// Client connections served at once; more are refused at once with
    /// Redis's `max number of clients reached`.
    pub max_clients: usize,
    /// Requests one client may have in flight before tenantry stops reading
    /// from it (backpressure instead of unbounded buffering).
    pub max_pipeline: usize,
    /// The same bound in bytes of requests (one request is always let through).
    pub max_pipeline_bytes: usize,
    /// Replies held for a client that does not read them.
    pub output: OutputLimits,
    /// A request must arrive whole within this time of its first byte
    /// (a client trickling a frame in is closed, not waited for).
    pub request_read_timeout: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            protocol: Limits::default(),
            max_clients: 10_000,
            max_pipeline: 10_000,
            max_pipeline_bytes: 64 * 1024 * 1024,
            output: OutputLimits::default(),
            request_read_timeout: Duration::from_secs(30),
        }
    }
}

/// What Redis's `client-output-buffer-limit` is to Redis: how much of a
/// client's unread output tenantry holds for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Past this, the client's requests stop being forwarded (it keeps its
    /// connection); past it for longer than `soft_for`, it is disconnected.
    pub soft: usize,
    pub soft_for: Duration,
    /// Past this, the client is disconnected at once.
    pub hard: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits { soft: 8 * 1024 * 1024, soft_for: Duration::from_secs(10), hard: 64 * 1024 * 1024 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendKind {
    Standalone,
    /// Redis Cluster: `nodes` are seeds; the slot map is discovered from them.
    Cluster {
        topology_refresh: Duration,
    },
    /// Standalone nodes behind a consistent-hash ring, placed as twemproxy's
    /// ketama distribution places them (one weight and name per node, in
    /// `nodes` order).
    Ring(RingSpec),
    /// A master and its replicas found through Redis Sentinel: `nodes` are
    /// the sentinels.
    Sentinel(SentinelSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelSpec {
    /// The name the sentinels monitor the master by.
    pub master_name: String,
    /// For the sentinels (the backend's `auth` is for the data nodes).
    pub auth: Option<BackendAuth>,
    /// How often the sentinels are asked again when nothing else prompted it.
    pub refresh: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingSpec {
    pub hash: RingHash,
    /// twemproxy's `hash_tag`: hash only what lies between these two bytes.
    pub hash_tag: Option<[u8; 2]>,
    pub weights: Vec<u32>,
    /// The name each node's ring points are made from (`host:port` unless named).
    pub names: Vec<String>,
}

/// twemproxy's key hashes (`hash:` of a pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingHash {
    Md5,
    Fnv164,
    Fnv1a64,
    Fnv132,
    Fnv1a32,
}

impl RingHash {
    pub const NAMES: [(&'static str, RingHash); 5] = [
        ("md5", RingHash::Md5),
        ("fnv1_64", RingHash::Fnv164),
        ("fnv1a_64", RingHash::Fnv1a64),
        ("fnv1_32", RingHash::Fnv132),
        ("fnv1a_32", RingHash::Fnv1a32),
    ];
}

/// Whether a tenant's read-only commands may go to replicas (of a cluster,
/// or the master a sentinel backend found).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadFrom {
    /// Masters only: reads see every write at once.
    #[default]
    Never,
    /// A replica when one is up, else the master.
    Prefer,
    /// Replicas only; an error when a slot has none up.
    Always,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: BackendName,
    pub kind: BackendKind,
    pub nodes: Vec<BackendAddr>,
    /// Multiplexed connections per node and protocol version.
    pub connections: usize,
    pub auth: Option<BackendAuth>,
    pub tls: Option<BackendTls>,
    /// tenantry creates each tenant's `backend_auth` user on every node.
    pub provision_acl: bool,
    pub connect_timeout: Duration,
    /// A backend that has not answered a request for this long is treated as dead.
    pub request_timeout: Duration,
}

impl Backend {
    /// This backend, logged in as a tenant's own user.
    pub fn as_user(&self, user: &BackendUser) -> Backend {
        let auth = BackendAuth { username: Some(user.username.clone()), password: user.password.clone() };
        Backend { auth: Some(auth), ..self.clone() }
    }
}

/// A tenant's own user on its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendUser {
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAuth {
    /// `None`: the `default` user (`requirepass`).
    pub username: Option<String>,
    pub password: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub backend: BackendName,
    pub namespace: Namespace,
    /// AUTH with a username and password chooses this tenant.
    pub auth: Option<TenantAuth>,
    /// A client certificate naming this identity chooses this tenant.
    pub certificate: Option<CertIdentity>,
    /// The backend user this tenant's commands run as (connections of its
    /// own, instead of the backend's shared ones); `None`: the backend's.
    pub backend_auth: Option<BackendUser>,
    pub rate_limit: Option<RateLimit>,
    pub commands: CommandRules,
    pub limits: TenantLimits,
    pub ttl: TtlPolicy,
    /// EVAL/EVALSHA allowed. Off by default: a script can reach keys it was
    /// not given, in any tenant's namespace.
    pub scripts: bool,
    /// The keyspace event classes the tenant may enable with `CONFIG SET
    /// notify-keyspace-events` (default: none). Each backend publishes the
    /// union of its tenants' classes: every class published costs every
    /// write on the server, so it is the operator's to grant.
    pub keyspace_events: tenantry_protocol::events::Flags,
    pub memory: Option<MemoryQuota>,
    pub read_from: ReadFrom,
    /// Which reads share the reply of an identical read in flight.
    pub coalesce: Coalesce,
    /// Hot keys' values kept in this proxy, invalidated by the backend.
    pub near_cache: Option<NearCache>,
    /// A move of its keys to another backend (or namespace) under way.
    pub migrate: Option<Migrate>,
}

/// `migrate:` of a tenant: its keys are copied to `to` while it is served
/// from its backend, then it is served from `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrate {
    pub to: BackendName,
    /// The namespace on `to`; `None`: the one it has.
    pub namespace: Option<Namespace>,
    /// How fast the backfill copies keys.
    pub keys_per_sec: u32,
    /// Keys compared on both sides before the cut-over.
    pub verify_sample: usize,
    /// Keep the old backend's copies after the cut-over.
    pub keep_old: bool,
}

impl Migrate {
    pub const DEFAULT_KEYS_PER_SEC: u32 = 10_000;
    pub const DEFAULT_VERIFY_SAMPLE: usize = 2_000;
}

impl Tenant {
    /// Where its keys are once a migration has cut over: the target backend
    /// and namespace.
    pub fn migration_target(&self) -> Option<(&BackendName, &Namespace)> {
        self.migrate.as_ref().map(|m| (&m.to, m.namespace.as_ref().unwrap_or(&self.namespace)))
    }
}

/// `near_cache:` of a tenant: tenantry keeps the replies of reads of the
/// tenant's hottest keys and answers them itself, dropping an entry when
/// the backend's client tracking says its key changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearCache {
    pub max_bytes: usize,
    /// How long after an invalidation could have been sent an entry may
    /// still be served.
    pub max_staleness: Duration,
    /// Only keys of these keyspaces (`None`: every key).
    pub keyspaces: Option<std::collections::BTreeSet<Vec<u8>>>,
}

impl NearCache {
    pub fn covers(&self, key: &[u8]) -> bool {
        self.keyspaces.as_ref().is_none_or(|k| k.contains(key.split(|&b| b == b':').next().unwrap_or(key)))
    }
}

/// Request coalescing: identical reads of one key in flight at once reach
/// the backend as one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Coalesce {
    #[default]
    Off,
    /// Every key of the tenant.
    All,
    /// Keys of these keyspaces (the client key up to its first `:`).
    Keyspaces(std::collections::BTreeSet<Vec<u8>>),
}

impl Coalesce {
    pub fn covers(&self, key: &[u8]) -> bool {
        match self {
            Coalesce::Off => false,
            Coalesce::All => true,
            Coalesce::Keyspaces(spaces) => spaces.contains(key.split(|&b| b == b':').next().unwrap_or(key)),
        }
    }
}

/// A rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    pub per_sec: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnExceed {
    Reject,
    /// Wait up to this long for capacity, then reject.
    Delay(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    pub ops: Option<Quota>,
    /// Request bytes (all arguments) per second.
    pub bytes: Option<Quota>,
    pub on_exceed: OnExceed,
    /// Each connection's own share, so one connection cannot take the whole tenant's rate.
    pub per_connection_ops: Option<Quota>,
}

/// A command name (`get`, `config`) or an ACL category (`@dangerous`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandRule {
    Command(String),
    Category { name: String, bit: u32 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandRules {
    /// Empty: every command tenantry supports is allowed.
    pub allow: Vec<CommandRule>,
    pub deny: Vec<CommandRule>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantLimits {
    pub max_key_bytes: Option<usize>,
    pub max_value_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_pipeline: Option<usize>,
    pub max_pipeline_bytes: Option<usize>,
    /// The tenant's own output limits, in place of the global ones.
    pub output: Option<OutputLimits>,
}

/// TTL rules of a tenant, and per keyspace (the client key up to its first `:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TtlPolicy {
    pub tenant: TtlRule,
    pub keyspaces: BTreeMap<Vec<u8>, TtlRule>,
}

impl TtlPolicy {
    pub fn is_noop(&self) -> bool {
        self.tenant.is_noop() && self.keyspaces.values().all(TtlRule::is_noop)
    }

    /// The rule for a client key: its keyspace's, else the tenant's.
    pub fn rule_for(&self, key: &[u8]) -> &TtlRule {
        if self.keyspaces.is_empty() {
            return &self.tenant;
        }
        let keyspace = key.split(|&b| b == b':').next().unwrap_or(key);
        self.keyspaces.get(keyspace).unwrap_or(&self.tenant)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantAuth {
    pub username: String,
    pub password: Secret,
}
