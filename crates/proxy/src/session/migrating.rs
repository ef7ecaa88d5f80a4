//! A request of a tenant being migrated (`crate::migrate`): a write goes to
//! the old backend with a mark that dirties its keys once answered; while
//! the cut-over barrier holds, requests wait (as a rate-limited one does)
//! and then go wherever the tenant is served from. A transaction queued
//! before the cut-over runs after it on the new backend, unless it WATCHed
//! keys on the old one: then EXEC fails as if a watched key had changed.

use super::transaction::Watch;
use super::{Delayed, Session};
use crate::tenant::migration::{namespaced, Migration};
use crate::tenant::TenantRt;
use std::sync::Arc;
use std::time::Duration;
use tenantry_protocol::command::{flags, CommandSpec};
use tenantry_protocol::encode::Reply;
use tenantry_protocol::Request;
use tokio::time::Instant;

/// How often a held request looks again.
const HOLD_RETRY: Duration = Duration::from_millis(2);
/// The longest a request is held before it is refused with TRYAGAIN (a
/// cut-over that takes longer is given up by its driver well before).
const HOLD_MAX: Duration = Duration::from_secs(15);

impl Session {
    /// The tenant's migration, if it is served from the old backend.
    fn migrating(tenant: &TenantRt) -> Option<&Arc<Migration>> {
        tenant.migration.as_ref().filter(|_| !tenant.moved)
    }

    /// The request back if it may go now (a write with its mark in
    /// `write_mark`); `None` if it waits or was refused.
    pub(super) fn through_migration(
        &mut self,
        tenant: &TenantRt,
        spec: &CommandSpec,
        blocking: bool,
        req: Request,
        deadline: Option<Instant>,
    ) -> Option<Request> {
        let goes = self.through_migration_now(tenant, spec, blocking, req, deadline);
        if goes.is_some() {
            self.hold_over(tenant);
        }
        goes
    }

    /// A request held at the cut-over goes on: how long it waited.
    fn hold_over(&mut self, tenant: &TenantRt) {
        if let (Some(since), Some(m)) = (self.held_since.take(), &tenant.migration) {
            m.held(since.elapsed());
        }
    }

    fn through_migration_now(
        &mut self,
        tenant: &TenantRt,
        spec: &CommandSpec,
        blocking: bool,
        req: Request,
        deadline: Option<Instant>,
    ) -> Option<Request> {
        self.write_mark = None;
        let Some(m) = Self::migrating(tenant).filter(|_| self.tx.is_none()) else { return Some(req) };
        let goes = if spec.has_flag(flags::READONLY) && !blocking {
            m.may_read()
        } else {
            self.write_mark = m.begin_write(namespaced(&tenant.namespace, &req.args, &self.keys));
            self.write_mark.is_some()
        };
        if goes {
            return Some(req);
        }
        self.hold(tenant, req, deadline);
        None
    }

    /// Puts the request off until the cut-over is over, or refuses it.
    fn hold(&mut self, tenant: &TenantRt, req: Request, deadline: Option<Instant>) {
        let now = Instant::now();
        self.held_since.get_or_insert(now);
        let deadline = deadline.unwrap_or(now + HOLD_MAX);
        if now >= deadline {
            self.hold_over(tenant);
            tenant.metrics.error(crate::telemetry::ErrorKind::Migrating, 1);
            return self.refuse(&format!("TRYAGAIN tenant '{}' is being moved to another backend", tenant.id));
        }
        let muted = self.replies.muting;
        self.delayed = Some(Box::new(Delayed { req, retry_at: now + HOLD_RETRY, deadline, muted }));
    }

    /// EXEC of a migrating tenant's transaction: `Some(req)` back if it is to
    /// run as usual (with its mark in `write_mark`); `None` if it waits or
    /// was answered.
    pub(super) fn exec_through_migration(&mut self, req: Request, deadline: Option<Instant>) -> Option<Request> {
        let tenant = self.tx.as_ref().map(|tx| tx.tenant.clone());
        let goes = self.exec_through_migration_now(req, deadline);
        if let (Some(tenant), true) = (tenant, goes.is_some()) {
            self.hold_over(&tenant);
        }
        goes
    }

    fn exec_through_migration_now(&mut self, req: Request, deadline: Option<Instant>) -> Option<Request> {
        self.write_mark = None;
        let Some(tx) = &self.tx else { return Some(req) };
        let tenant = tx.tenant.clone();
        let Some(m) = Self::migrating(&tenant) else { return Some(req) };
        if m.is_cut() {
            // Queued before the cut-over, to run after it.
            if matches!(self.watch, Watch::Active { .. }) {
                // Its watched keys are on the old backend: as if one changed.
                self.tx = None;
                self.watch = Watch::Stale;
                let proto = self.state.proto;
                self.batcher.local(&mut self.replies, |out| Reply { out, proto }.null_array());
                return None;
            }
            let current = self.state.tenant.clone().filter(|t| t.id == tenant.id && t.moved);
            match (current, self.tx.as_mut()) {
                (Some(now), Some(tx)) => tx.tenant = now,
                _ => {
                    self.hold(&tenant, req, deadline);
                    return None;
                }
            }
            return Some(req);
        }
        let keys: Vec<_> = tx.queued.iter().flat_map(|q| namespaced(&tenant.namespace, &q.args, &q.keys)).collect();
        self.write_mark = m.begin_write(keys);
        if self.write_mark.is_some() {
            return Some(req);
        }
        self.hold(&tenant, req, deadline);
        None
    }
}
