//! Telemetry: per-tenant metrics, latency, error kinds and tracing. What
//! nodes report on their own (INFO, evictions and expirations) is read by
//! `node_events.rs`, into these metrics.

mod errors;
mod latency;
pub mod metrics;
pub mod tracing_setup;

pub use errors::ErrorKind;
pub use metrics::{
    keyspace_of, ClusterMetrics, CommandCache, Families, KeyspaceCache, KeyspaceCounters, MigrationPhaseLabels,
    TenantLabel, TenantMetrics,
};
