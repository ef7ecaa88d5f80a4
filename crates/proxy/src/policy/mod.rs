//! A tenant's policy, applied to each request before it is forwarded.

mod limiter;
mod rules;

pub use limiter::{connection_limiter, TenantLimiter};
pub use rules::{check_command, check_sizes};
