//! What a connection is: its tenant (and its place in the tenant's
//! connection count), protocol, name, and the config generation it follows.

use crate::policy::connection_limiter;
use crate::runtime::{Runtime, TenantRt};
use arc_swap::ArcSwap;
use bytes::Bytes;
use governor::DefaultDirectRateLimiter;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tenantry_config::ClientLimits;
use tenantry_protocol::Protocol;

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// One place in a tenant's connection count, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct State {
    pub id: u64,
    pub runtime: Arc<ArcSwap<Runtime>>,
    /// `None`: not authenticated and no default tenant (or the tenant was removed).
    pub tenant: Option<Arc<TenantRt>>,
    /// Chosen with AUTH/HELLO (rather than the default tenant).
    explicit: bool,
    slot: Option<Slot>,
    /// This connection's own share of its tenant's rate, if the tenant has one.
    pub conn_limiter: Option<DefaultDirectRateLimiter>,
    pub proto: Protocol,
    pub name: Option<Bytes>,
    generation: u64,
    pub limits: ClientLimits,
}

impl State {
    /// A new connection on the default tenant; `Err` if that tenant is at its
    /// connection limit.
    pub fn new(runtime: Arc<ArcSwap<Runtime>>) -> (Self, Result<(), String>) {
        let rt = runtime.load_full();
        let mut state = State {
            id: NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed),
            runtime,
            tenant: None,
            explicit: false,
            slot: None,
            conn_limiter: None,
            proto: Protocol::Resp2,
            name: None,
            generation: rt.generation,
            limits: rt.limits,
        };
        let admitted = state.select(rt.default_tenant.clone(), false);
        (state, admitted)
    }

    /// Switches to `tenant`, taking a place in its connection count.
    pub fn select(&mut self, tenant: Option<Arc<TenantRt>>, explicit: bool) -> Result<(), String> {
        let same = matches!((&self.tenant, &tenant), (Some(a), Some(b)) if a.id == b.id);
        if let (Some(t), false) = (&tenant, same) {
            let count = &t.connections;
            if let Some(max) = t.config.limits.max_connections {
                if count.fetch_add(1, Ordering::Relaxed) >= max {
                    count.fetch_sub(1, Ordering::Relaxed);
                    return Err(format!(
                        "ERR too many connections for tenant '{}': limits.max_connections is {max}",
                        t.id
                    ));
                }
            } else {
                count.fetch_add(1, Ordering::Relaxed);
            }
            self.slot = Some(Slot(count.clone()));
        }
        if tenant.is_none() {
            self.slot = None;
        }
        self.conn_limiter = tenant
            .as_ref()
            .and_then(|t| t.config.rate_limit)
            .and_then(|rl| rl.per_connection_ops)
            .map(connection_limiter);
        self.tenant = tenant;
        self.explicit = explicit;
        Ok(())
    }

    /// RESET: back to a new connection's state, keeping the id.
    pub fn reset(&mut self) {
        let default = self.runtime.load().default_tenant.clone();
        // The default tenant's limit does not apply to a connection already counted.
        if self.select(default.clone(), false).is_err() {
            self.slot = None;
            self.tenant = default;
        }
        self.proto = Protocol::Resp2;
        self.name = None;
    }

    /// Follows a reload: the same tenant (by name) in the new config, the new
    /// default tenant for connections that never authenticated, and the new
    /// client limits. A tenant removed from the config leaves the connection
    /// unauthenticated.
    pub fn refresh(&mut self) {
        let rt = self.runtime.load();
        if rt.generation == self.generation {
            return;
        }
        self.generation = rt.generation;
        self.limits = rt.limits;
        let next = if self.explicit {
            self.tenant.as_ref().and_then(|t| rt.tenants.get(&t.id).cloned())
        } else {
            rt.default_tenant.clone()
        };
        let same = matches!((&self.tenant, &next), (Some(a), Some(b)) if a.id == b.id);
        if same {
            let keep_limiter =
                self.tenant.as_ref().map(|t| t.config.rate_limit) == next.as_ref().map(|t| t.config.rate_limit);
            let limiter = self.conn_limiter.take();
            let explicit = self.explicit;
            let slot = self.slot.take();
            self.tenant = next;
            self.slot = slot;
            self.explicit = explicit;
            self.conn_limiter = if keep_limiter {
                limiter
            } else {
                self.tenant
                    .as_ref()
                    .and_then(|t| t.config.rate_limit)
                    .and_then(|rl| rl.per_connection_ops)
                    .map(connection_limiter)
            };
        } else {
            let explicit = self.explicit;
            if self.select(next.clone(), explicit).is_err() {
                // Over the new tenant's limit: keep serving it rather than cut the connection.
                self.slot = None;
                self.tenant = next;
            }
        }
    }

    /// Requests in flight before this connection stops being read: the
    /// client limit, lowered by the tenant's own.
    pub fn max_pipeline(&self) -> usize {
        let tenant = self.tenant.as_ref().and_then(|t| t.config.limits.max_pipeline);
        tenant.map_or(self.limits.max_pipeline, |t| t.min(self.limits.max_pipeline))
    }
}
