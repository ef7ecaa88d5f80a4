//! Step 2 of a forwarded request, after policy: admission. A write over
//! the tenant's memory quota waits a little for eviction, then gets `-OOM`;
//! a request over the tenant's rate waits (`on_exceed: delay`) or is
//! refused. A request that waits is kept in `Session::delayed` and comes
//! back through here when its time comes.

use super::{Delayed, Session};
use crate::telemetry::ErrorKind;
use crate::tenant::Admit;
use crate::tenant::TenantRt;
use std::time::Duration;
use tenantry_config::OnExceed;
use tenantry_protocol::command::{flags, CommandSpec};
use tenantry_protocol::Request;
use tokio::time::Instant;

/// How long a write over quota (with an evicting policy) waits for eviction
/// to free memory before it gets -OOM: while eviction keeps freeing the
/// tenant's keys the write keeps waiting, as a Redis write waits for its own
/// eviction, up to `QUOTA_LONGEST_WAIT`; if eviction frees nothing for
/// `QUOTA_STALL` it is stuck and the write is refused. How often it looks.
const QUOTA_STALL: Duration = Duration::from_millis(250);
const QUOTA_LONGEST_WAIT: Duration = Duration::from_secs(2);
const QUOTA_RETRY: Duration = Duration::from_millis(2);

impl Session {
    /// The request back if it may go now; `None` if it waits (delayed) or
    /// was refused. `deadline`: set when it is a delayed request's retry.
    pub(super) fn admit(
        &mut self,
        tenant: &TenantRt,
        spec: &CommandSpec,
        req: Request,
        deadline: Option<Instant>,
    ) -> Option<Request> {
        // Before the rate limit: a write held back by the quota is retried
        // through here, and must not take rate-limit tokens twice.
        let req = self.within_quota(tenant, spec, req, deadline)?;
        self.within_rate(tenant, req, deadline)
    }

    fn within_quota(
        &mut self,
        tenant: &TenantRt,
        spec: &CommandSpec,
        req: Request,
        deadline: Option<Instant>,
    ) -> Option<Request> {
        let (Some(quota), true) = (&tenant.config.memory, spec.has_flag(flags::DENYOOM)) else { return Some(req) };
        let deadline = match tenant.quota.admit(quota) {
            Admit::Yes => return Some(req),
            Admit::Wait if self.tx.is_none() => deadline.unwrap_or(self.read_at + QUOTA_LONGEST_WAIT),
            _ => Instant::now(),
        };
        let now = Instant::now();
        let waiting_since = deadline.checked_sub(QUOTA_LONGEST_WAIT).unwrap_or(now);
        let progress = tenant.quota.freed_at().map(Instant::from_std).map_or(waiting_since, |e| e.max(waiting_since));
        if now + QUOTA_RETRY <= deadline && now < progress + QUOTA_STALL {
            self.delayed =
                Some(Box::new(Delayed { req, retry_at: now + QUOTA_RETRY, deadline, muted: self.replies.muting }));
        } else {
            tenant.metrics.error(ErrorKind::Oom, 1);
            tenant.metrics.quota_refused.inc();
            self.refuse(&format!(
                "OOM command not allowed when used memory > tenant '{}' memory_quota ({} > {} bytes, {})",
                tenant.id,
                tenant.quota.used(),
                quota.bytes,
                quota.eviction.name()
            ));
        }
        None
    }

    fn within_rate(&mut self, tenant: &TenantRt, req: Request, deadline: Option<Instant>) -> Option<Request> {
        let Some(limiter) = &tenant.limiter else { return Some(req) };
        let bytes: usize = req.args.iter().map(|a| a.len()).sum();
        let Err(wait) = limiter.check(bytes, self.state.conn_limiter.as_ref()) else { return Some(req) };
        let now = Instant::now();
        let deadline = match limiter.config.on_exceed {
            // Inside MULTI a command is refused rather than delayed.
            OnExceed::Delay(max) if self.tx.is_none() => Some(deadline.unwrap_or(self.read_at + max)),
            _ => None,
        };
        match deadline {
            Some(deadline) if now + wait <= deadline => {
                // Whole milliseconds, so the retry does not come a hair too early.
                let retry_at = now + wait.max(Duration::from_millis(1));
                self.delayed = Some(Box::new(Delayed { req, retry_at, deadline, muted: self.replies.muting }));
            }
            _ => {
                tenant.metrics.error(ErrorKind::RateLimited, 1);
                self.refuse(&format!("ERR rate limit exceeded for tenant '{}' ({})", tenant.id, limiter.describe()))
            }
        }
        None
    }
}
