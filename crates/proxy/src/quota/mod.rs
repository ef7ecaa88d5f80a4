//! Per-tenant memory quotas on shared backends.
//!
//! Redis has one `maxmemory` and one eviction policy per server, so one
//! tenant's write spike evicts everyone's keys. tenantry gives each tenant a
//! quota of its own and applies the tenant's eviction policy to its own keys:
//!
//! - **Measuring** (`measure`): one proxy per node walks the keyspace with
//!   SCAN at a bounded rate, counts each tenant's keys and sizes one in
//!   `sample_one_in` of them with `MEMORY USAGE`: a tenant's use is its key
//!   count times the mean sampled size.
//! - **Between measurements** every proxy adds what its clients write to a
//!   shared `delta` (`write_cost`), so a write spike shows at once, not at
//!   the next pass; evictions subtract what they free.
//! - **Sharing** (`worker`): the figures live on the node itself, in a hash
//!   `tenantry:quota:<namespace>`; every proxy adds its delta and reads the
//!   figures back every `refresh`, so all proxies see the same use and the
//!   same over-quota state.
//! - **Enforcing**: sessions ask `admit` before each write that may grow
//!   memory (Redis's `denyoom` commands). `noeviction` refuses them with -OOM
//!   at the quota; the other policies let the elected proxy evict the
//!   tenant's own keys (`evict`), and hold writes back only if eviction falls
//!   behind by more than `HEADROOM`.
//! - **Electing**: measuring and evicting are done by whichever proxy holds
//!   the lease `tenantry:quota:lease` on the node (see `crate::lease`).

mod evict;
mod measure;
mod worker;

pub use worker::supervise;
