//! The proxy: client sessions, tenant identification, backend pools.
#![forbid(unsafe_code)]

mod admin;
pub mod backend;
pub mod backend_users;
mod bufpool;
mod cleanup;
mod clients;
pub mod error;
mod info;
mod lease;
mod migrate;
mod near_cache;
mod node_events;
mod node_tasks;
mod out_queue;
mod policy;
mod quota;
mod reload;
mod runtime;
mod server;
mod server_events;
mod session;
mod status;
mod stop;
mod stream;
mod telemetry;
mod tenant;
pub mod tls;
pub use telemetry::tracing_setup::{init as init_tracing, Otlp, TracingGuard};

pub use reload::version_of;
pub use runtime::Runtime;
pub use server::{Proxy, StartError};
/// The reply queue's model client, for the `reply_order` fuzz target.
#[cfg(feature = "fuzzing")]
pub use session::order_check;
pub use tenant::TenantRt;
