//! Telemetry: per-tenant metrics, backend figures, evictions and expirations
//! attributed to the tenant whose key it was.

pub mod metrics;

pub use metrics::{Families, KeyspaceCounters, TenantMetrics};
