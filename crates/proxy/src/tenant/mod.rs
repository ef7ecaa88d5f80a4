//! What every connection of a tenant shares on this proxy: its settings and
//! backend, and the state its sessions, the quota workers and telemetry all
//! read and update (memory use, metrics, patterns, clients). It is the one
//! module those parts meet in, so none of them imports another's.

mod events;
pub mod migration;
mod migration_keys;
mod patterns;
mod quota;
mod scripts;
mod write_cost;

pub use events::EventFlags;
pub use patterns::Patterns;
pub use quota::{figures_key, Admit, QuotaState};
pub(crate) use quota::{Figures, Unsent};
pub use scripts::{scripts_key, Known, Scripts, Sha};
pub use write_cost::write_cost;

use crate::backend::Router;
use crate::clients::TenantClients;
use crate::policy::TenantLimiter;
use crate::telemetry::TenantMetrics;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tenantry_config::{Tenant, TenantId};
use tenantry_protocol::Namespace;

/// tenantry's own key on the backend for one kind of record about a
/// namespace: `tenantry:<kind>:<namespace>` (no tenant's namespace can
/// overlap `tenantry:`, so no tenant can reach it).
fn own_key(kind: &str, namespace: &Namespace) -> Vec<u8> {
    let mut key = format!("tenantry:{kind}:").into_bytes();
    key.extend_from_slice(namespace.as_bytes());
    key
}

/// The origin of the times tenants' shared state keeps in atomics.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// What a session needs to know about its tenant.
#[derive(Debug)]
pub struct TenantRt {
    pub id: TenantId,
    pub namespace: Namespace,
    pub backend: Arc<Router>,
    /// The backend's own router (logged in as tenantry's user), for
    /// tenantry's keys about the tenant (`own_key`): a tenant's backend user
    /// may reach only its namespace. The same as `backend` for most tenants.
    pub shared: Arc<Router>,
    /// The tenant's settings as configured (rules, limits, TTLs).
    pub config: Tenant,
    pub limiter: Option<Arc<TenantLimiter>>,
    /// Open connections of this tenant; shared by every generation of the config.
    pub connections: Arc<AtomicUsize>,
    /// Shared by every generation of the config, like `connections`.
    pub metrics: Arc<TenantMetrics>,
    /// Memory use against `config.memory`; kept while namespace and backend stay.
    pub quota: Arc<QuotaState>,
    /// Patterns its clients subscribe to through this proxy (PUBSUB NUMPAT).
    pub patterns: Arc<Patterns>,
    /// Its client connections on this proxy (CLIENT LIST, CLIENT KILL).
    pub clients: Arc<TenantClients>,
    /// Its reads in flight that identical reads may share (`coalesce`).
    pub flights: Option<Arc<crate::backend::Flights>>,
    /// Its hot keys' replies, kept by this proxy (`near_cache`).
    pub near_cache: Option<Arc<crate::near_cache::NearCache>>,
    /// The scripts it loaded, as this proxy last saw them.
    pub scripts: Arc<Scripts>,
    /// Its `notify-keyspace-events`: which keyspace events its subscribers get.
    pub events: Arc<EventFlags>,
    /// Its move to another backend, while the config asks for one.
    pub migration: Option<Arc<migration::Migration>>,
    /// Served from the migration's target (it has cut over): `backend`,
    /// `namespace` and `config`'s are the target's.
    pub moved: bool,
}
