//! Per-tenant rate limits (governor): operations and request bytes per
//! second, each with a burst.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota as GQuota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;
use tenantry_config::{Quota, RateLimit};

/// The limiters of one tenant. Kept across reloads while its `rate_limit`
/// settings do not change, so a reload neither refills nor drains them.
#[derive(Debug)]
pub struct TenantLimiter {
    pub config: RateLimit,
    ops: Option<DefaultDirectRateLimiter>,
    bytes: Option<(DefaultDirectRateLimiter, u32)>,
}

/// A limiter for one connection's own share of its tenant's rate.
pub fn connection_limiter(q: Quota) -> DefaultDirectRateLimiter {
    RateLimiter::direct(gquota(q))
}

fn gquota(q: Quota) -> GQuota {
    let rate = NonZeroU32::new(q.per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(q.burst).unwrap_or(NonZeroU32::MIN);
    GQuota::per_second(rate).allow_burst(burst)
}

impl TenantLimiter {
    pub fn new(config: RateLimit) -> Self {
        TenantLimiter {
            config,
            ops: config.ops.map(|q| RateLimiter::direct(gquota(q))),
            bytes: config.bytes.map(|q| (RateLimiter::direct(gquota(q)), q.burst)),
        }
    }

    /// Takes one operation of `bytes` request bytes, or says how long until
    /// it could be taken. A request larger than the byte burst is charged
    /// the whole burst (it could never pass otherwise).
    pub fn check(&self, bytes: usize, conn: Option<&DefaultDirectRateLimiter>) -> Result<(), Duration> {
        // The clock is read for a refusal's wait only: a pass reads it once,
        // inside each limiter.
        let wait = |n: governor::NotUntil<_>| n.wait_time_from(DefaultClock::default().now());
        if let Some(c) = conn {
            c.check().map_err(wait)?;
        }
        if let Some(ops) = &self.ops {
            ops.check().map_err(wait)?;
        }
        if let Some((limiter, burst)) = &self.bytes {
            let n = NonZeroU32::new((bytes.min(*burst as usize)) as u32).unwrap_or(NonZeroU32::MIN);
            match limiter.check_n(n) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => return Err(wait(not_until)),
                Err(_) => return Err(Duration::from_secs(1)),
            }
        }
        Ok(())
    }

    /// The limit as an error message names it.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(q) = self.config.ops {
            parts.push(format!("{} ops/s, burst {}", q.per_sec, q.burst));
        }
        if let Some(q) = self.config.bytes {
            parts.push(format!("{} bytes/s, burst {}", q.per_sec, q.burst));
        }
        if let Some(q) = self.config.per_connection_ops {
            parts.push(format!("{} ops/s per connection", q.per_sec));
        }
        parts.join("; ")
    }
}
