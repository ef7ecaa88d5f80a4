//! What a connection is: its tenant (and its place in the tenant's
//! connection count), protocol, name, and the config generation it follows.

use crate::clients::{ClientHandle, TenantClients};
use crate::error::{Error, Kind};
use crate::policy::connection_limiter;
use crate::runtime::Runtime;
use crate::tenant::TenantRt;
use arc_swap::ArcSwap;
use bytes::Bytes;
use governor::DefaultDirectRateLimiter;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tenantry_config::{ClientLimits, OutputLimits};
use tenantry_protocol::Protocol;

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// One place in a tenant's connection count and client list, given back on drop.
struct Slot(Arc<AtomicUsize>, prometheus_client::metrics::gauge::Gauge, Arc<TenantClients>, u64);

impl Slot {
    fn take(tenant: &TenantRt, client: &Arc<ClientHandle>, enforce: bool) -> Result<Slot, Error> {
        let count = &tenant.connections;
        let before = count.fetch_add(1, Ordering::Relaxed);
        if let (true, Some(max)) = (enforce, tenant.config.limits.max_connections) {
            if before >= max {
                count.fetch_sub(1, Ordering::Relaxed);
                let why = format!("too many connections for tenant '{}': limits.max_connections is {max}", tenant.id);
                return Err(Error::new(Kind::Limit, why));
            }
        }
        tenant.metrics.connections.inc();
        tenant.clients.add(client);
        Ok(Slot(count.clone(), tenant.metrics.connections.clone(), tenant.clients.clone(), client.id))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.dec();
        self.2.remove(self.3);
    }
}

pub struct State {
    pub id: u64,
    /// What CLIENT LIST shows of this connection.
    pub client: Arc<ClientHandle>,
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
    pub big_value_bytes: usize,
}

impl State {
    /// A new connection on the default tenant; `Err` if that tenant is at its
    /// connection limit.
    pub fn new(
        runtime: Arc<ArcSwap<Runtime>>,
        addr: Option<SocketAddr>,
        laddr: Option<SocketAddr>,
        identities: &[tenantry_config::CertIdentity],
    ) -> (Self, Result<(), Error>) {
        let rt = runtime.load_full();
        let id = NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed);
        let mut state = State {
            id,
            client: Arc::new(ClientHandle::new(id, addr, laddr)),
            runtime,
            tenant: None,
            explicit: false,
            slot: None,
            conn_limiter: None,
            proto: Protocol::Resp2,
            name: None,
            generation: rt.generation,
            limits: rt.limits,
            big_value_bytes: rt.config.telemetry.big_value_bytes,
        };
        // A client certificate naming a tenant chooses it, as AUTH would.
        let admitted = match rt.tenant_for_certificate(identities) {
            Some(t) => state.select(Some(t), true),
            None => state.select(rt.default_tenant.clone(), false),
        };
        (state, admitted)
    }

    /// AUTH/HELLO: switches to `tenant`, refused if it is at its connection limit.
    pub fn select(&mut self, tenant: Option<Arc<TenantRt>>, explicit: bool) -> Result<(), Error> {
        self.switch(tenant, explicit, true)
    }

    /// Switches to `tenant`. Joining a tenant other than the one the
    /// connection is counted in takes a place in its connection count;
    /// `enforce` refuses that when the tenant is at `max_connections`.
    fn switch(&mut self, tenant: Option<Arc<TenantRt>>, explicit: bool, enforce: bool) -> Result<(), Error> {
        let joining = match (&self.tenant, &tenant) {
            (Some(a), Some(b)) => a.id != b.id,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if let (true, Some(t)) = (joining, &tenant) {
            self.slot = Some(Slot::take(t, &self.client, enforce)?);
        }
        if tenant.is_none() {
            self.slot = None;
        }
        let share = |t: &Option<Arc<TenantRt>>| t.as_ref().and_then(|t| t.config.rate_limit?.per_connection_ops);
        if joining || share(&self.tenant) != share(&tenant) {
            self.conn_limiter = share(&tenant).map(connection_limiter);
        }
        self.tenant = tenant;
        self.explicit = explicit;
        Ok(())
    }

    /// RESET: back to a new connection's state, keeping the id. The default
    /// tenant's connection limit does not throw out a connection already open.
    pub fn reset(&mut self) {
        let default = self.runtime.load().default_tenant.clone();
        let _ = self.switch(default, false, false);
        self.set_proto(Protocol::Resp2);
        self.set_name(None);
    }

    pub fn set_name(&mut self, name: Option<Bytes>) {
        *self.client.name.lock().expect("not poisoned") = name.clone();
        self.name = name;
    }

    pub fn set_proto(&mut self, proto: Protocol) {
        self.client.resp.store(proto.version() as u8, Ordering::Relaxed);
        self.proto = proto;
    }

    /// Follows a reload: the same tenant (by name) in the new config, the new
    /// default tenant for connections that never authenticated, and the new
    /// client limits. A tenant removed from the config leaves the connection
    /// unauthenticated. An open connection is never thrown out by a lower
    /// connection limit.
    pub fn refresh(&mut self) {
        // A guard for the check, which is all most requests need: no count taken.
        if self.runtime.load().generation == self.generation {
            return;
        }
        let rt = self.runtime.load_full();
        self.generation = rt.generation;
        self.limits = rt.limits;
        self.big_value_bytes = rt.config.telemetry.big_value_bytes;
        let next = if self.explicit {
            self.tenant.as_ref().and_then(|t| rt.tenants.get(&t.id).cloned())
        } else {
            rt.default_tenant.clone()
        };
        let _ = self.switch(next, self.explicit, false);
    }

    /// Requests in flight before this connection stops being read: the
    /// client limit, lowered by the tenant's own.
    pub fn max_pipeline(&self) -> usize {
        let tenant = self.tenant.as_ref().and_then(|t| t.config.limits.max_pipeline);
        tenant.map_or(self.limits.max_pipeline, |t| t.min(self.limits.max_pipeline))
    }

    /// The same bound in bytes of requests.
    pub fn max_pipeline_bytes(&self) -> usize {
        let tenant = self.tenant.as_ref().and_then(|t| t.config.limits.max_pipeline_bytes);
        tenant.map_or(self.limits.max_pipeline_bytes, |t| t.min(self.limits.max_pipeline_bytes))
    }

    /// The tenant's output limits, else the global ones.
    pub fn output_limits(&self) -> OutputLimits {
        self.tenant.as_ref().and_then(|t| t.config.limits.output).unwrap_or(self.limits.output)
    }
}
