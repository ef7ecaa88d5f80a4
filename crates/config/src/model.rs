//! The validated configuration: what the proxy runs from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tenantry_protocol::{Limits, Namespace};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn new(s: &str) -> Self {
                $name(Arc::from(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A tenant's name, the key of `tenants:` in the YAML.
    TenantId
);
name_type!(
    /// A backend's name, the key of `backends:` in the YAML.
    BackendName
);
name_type!(
    /// `host:port` of one Redis node; the host may be a DNS name, resolved on connect.
    BackendAddr
);

/// A password, resolved from the YAML, a file or the environment. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    pub fn new(bytes: &[u8]) -> Self {
        Secret(Arc::from(bytes))
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub limits: ClientLimits,
    pub backends: BTreeMap<BackendName, Backend>,
    pub tenants: BTreeMap<TenantId, Tenant>,
    pub default_tenant: Option<TenantId>,
}

/// Bounds on each client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    pub protocol: Limits,
    /// Client connections accepted at once; more wait in the listen backlog.
    pub max_clients: usize,
    /// Requests one client may have in flight before tenantry stops reading
    /// from it (backpressure instead of unbounded buffering).
    pub max_pipeline: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            protocol: Limits::default(),
            max_clients: 10_000,
            max_pipeline: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Standalone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: BackendName,
    pub kind: BackendKind,
    pub nodes: Vec<BackendAddr>,
    /// Multiplexed connections per node and protocol version.
    pub connections: usize,
    pub auth: Option<BackendAuth>,
    pub connect_timeout: Duration,
    /// A backend that has not answered a request for this long is treated as dead.
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAuth {
    /// `None`: the `default` user (`requirepass`).
    pub username: Option<String>,
    pub password: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub backend: BackendName,
    pub namespace: Namespace,
    pub auth: Option<TenantAuth>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantAuth {
    pub username: String,
    pub password: Secret,
}
