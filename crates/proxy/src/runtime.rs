//! The running form of a config: tenants with their backends' routers and
//! credential digests, swapped as one value.

use crate::backend::Router;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tenantry_config::{BackendName, ClientLimits, Config, TenantId};
use tenantry_protocol::Namespace;

/// What a session needs to know about its tenant.
#[derive(Debug)]
pub struct TenantRt {
    pub id: TenantId,
    pub namespace: Namespace,
    pub backend: Arc<Router>,
}

#[derive(Debug)]
struct Credential {
    tenant: Arc<TenantRt>,
    password_sha256: [u8; 32],
}

#[derive(Debug)]
pub struct Runtime {
    pub limits: ClientLimits,
    pub tenants: HashMap<TenantId, Arc<TenantRt>>,
    pub default_tenant: Option<Arc<TenantRt>>,
    pub backends: HashMap<BackendName, Arc<Router>>,
    by_username: HashMap<String, Credential>,
}

pub enum AuthOutcome {
    Ok(Arc<TenantRt>),
    WrongPass,
}

impl Runtime {
    /// Builds routers (which start connecting) for every backend. Call from
    /// inside the tokio runtime.
    pub fn new(config: &Config) -> Self {
        let backends: HashMap<BackendName, Arc<Router>> =
            config.backends.iter().map(|(name, b)| (name.clone(), Arc::new(Router::new(b)))).collect();
        let mut tenants = HashMap::new();
        let mut by_username = HashMap::new();
        for (id, t) in &config.tenants {
            let rt = Arc::new(TenantRt {
                id: id.clone(),
                namespace: t.namespace.clone(),
                backend: backends[&t.backend].clone(),
            });
            if let Some(auth) = &t.auth {
                by_username.insert(
                    auth.username.clone(),
                    Credential { tenant: rt.clone(), password_sha256: Sha256::digest(auth.password.expose()).into() },
                );
            }
            tenants.insert(id.clone(), rt);
        }
        let default_tenant = config.default_tenant.as_ref().map(|id| tenants[id].clone());
        Runtime { limits: config.limits, tenants, default_tenant, backends, by_username }
    }

    /// Whether any tenant authenticates as `username`.
    pub fn has_user(&self, username: &[u8]) -> bool {
        std::str::from_utf8(username).is_ok_and(|u| self.by_username.contains_key(u))
    }

    /// Checks credentials. Passwords are compared as SHA-256 digests in
    /// constant time, so neither their content nor their length leaks through
    /// timing; an unknown user costs the same digest.
    pub fn authenticate(&self, username: &[u8], password: &[u8]) -> AuthOutcome {
        let given: [u8; 32] = Sha256::digest(password).into();
        let cred = std::str::from_utf8(username).ok().and_then(|u| self.by_username.get(u));
        let expected = cred.map(|c| c.password_sha256).unwrap_or([0u8; 32]);
        let matches: bool = given.ct_eq(&expected).into();
        match cred {
            Some(c) if matches => AuthOutcome::Ok(c.tenant.clone()),
            _ => AuthOutcome::WrongPass,
        }
    }

    pub fn all_backends_up(&self) -> bool {
        self.backends.values().all(|b| b.is_up())
    }
}
