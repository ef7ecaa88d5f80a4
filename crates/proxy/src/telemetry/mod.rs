//! Telemetry: per-tenant metrics, backend figures, evictions and expirations
//! attributed to the tenant whose key it was.

mod errors;
mod latency;
pub mod metrics;
pub mod nodes;
pub mod tracing_setup;

pub use errors::ErrorKind;
pub use metrics::{
    keyspace_of, ClusterMetrics, CommandCache, Families, KeyspaceCache, KeyspaceCounters, TenantMetrics,
};
