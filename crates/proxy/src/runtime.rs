//! The running form of a config: tenants with their backends' routers,
//! limiters and credential digests, swapped as one value on reload.

use crate::backend::Router;
use crate::near_cache::NearCache;
use crate::policy::TenantLimiter;
use crate::telemetry::{Families, TenantMetrics};
use crate::tenant::migration::Migration;
use crate::tenant::TenantRt;
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tenantry_config::{BackendName, CertIdentity, Change, ClientLimits, Config, ConfigDiff, TenantId};

#[derive(Debug)]
struct Credential {
    tenant: Arc<TenantRt>,
    password_sha256: [u8; 32],
}

#[derive(Debug)]
pub struct Runtime {
    /// Increases with every applied config; sessions re-resolve their tenant when it changes.
    pub generation: u64,
    /// Hash of the config file, as operators see it.
    pub version: String,
    pub config: Arc<Config>,
    pub limits: ClientLimits,
    pub tenants: HashMap<TenantId, Arc<TenantRt>>,
    pub default_tenant: Option<Arc<TenantRt>>,
    pub backends: HashMap<BackendName, Arc<Router>>,
    by_username: HashMap<String, Credential>,
    /// Tenants a client certificate chooses.
    by_certificate: HashMap<CertIdentity, Arc<TenantRt>>,
    /// Tenants whose backend user the backend refused to create: served on
    /// the backend's own connections, without scripts. Kept across reloads.
    pub unprovisioned: Arc<Unprovisioned>,
}

/// The tenants whose backend user `provision_acl` could not create
/// (`backend_users.rs` fills it; a runtime built after that serves them
/// without their user, scripts off).
#[derive(Debug, Default)]
pub struct Unprovisioned(std::sync::Mutex<std::collections::HashSet<TenantId>>);

impl Unprovisioned {
    pub fn contains(&self, id: &TenantId) -> bool {
        self.0.lock().expect("not poisoned").contains(id)
    }

    /// True if it changed.
    pub fn set(&self, id: &TenantId, refused: bool) -> bool {
        let mut set = self.0.lock().expect("not poisoned");
        if refused {
            set.insert(id.clone())
        } else {
            set.remove(id)
        }
    }
}

pub enum AuthOutcome {
    Ok(Arc<TenantRt>),
    WrongPass,
}

impl Runtime {
    /// Builds the runtime for `config`; `previous` is the one it replaces,
    /// and `diff` what changed from its config. Routers (and their
    /// connections) of backends whose settings did not change are taken
    /// over, as are limiters whose settings did not change, every tenant's
    /// connection count, and its quota figures where its keys stayed. Call
    /// from inside the tokio runtime: new routers start connecting at once.
    pub fn new(
        config: Arc<Config>,
        version: String,
        previous: Option<(&Runtime, &ConfigDiff)>,
        families: &Arc<Families>,
    ) -> Self {
        let diff = previous.map(|(_, d)| d);
        let previous = previous.map(|(p, _)| p);
        let backends: HashMap<BackendName, Arc<Router>> = config
            .backends
            .iter()
            .map(|(name, b)| {
                let same = diff.is_some_and(|d| d.backend(name) == Change::Same);
                let kept = previous.filter(|_| same).and_then(|p| p.backends.get(name).cloned());
                (name.clone(), kept.unwrap_or_else(|| Arc::new(Router::new(b, families))))
            })
            .collect();
        let mut tenants = HashMap::new();
        let mut by_username = HashMap::new();
        let mut by_certificate = HashMap::new();
        let unprovisioned = previous.map(|p| p.unprovisioned.clone()).unwrap_or_default();
        for (id, configured) in &config.tenants {
            let old = previous.and_then(|p| p.tenants.get(id));
            let migration = migration(configured, old, &backends, diff);
            let moved = migration.as_ref().is_some_and(|m| m.is_cut());
            // Once cut over, it is served as if the config put it on the target.
            let placed;
            let configured = match configured.migration_target().filter(|_| moved) {
                Some((to, ns)) => {
                    placed =
                        tenantry_config::Tenant { backend: to.clone(), namespace: ns.clone(), ..configured.clone() };
                    &placed
                }
                None => configured,
            };
            // A backend user that could not be made: without it, scripts
            // could reach other tenants' keys, so they are off.
            let fallback;
            let t = match configured.backend_auth.is_some() && unprovisioned.contains(id) {
                true => {
                    fallback = tenantry_config::Tenant { backend_auth: None, scripts: false, ..configured.clone() };
                    &fallback
                }
                false => configured,
            };
            let keys_stay = diff.is_some_and(|d| d.keys_stay(id)) && old.is_some_and(|o| o.moved == moved);
            let limiter = t.rate_limit.map(|rl| match old.and_then(|o| o.limiter.clone()) {
                Some(l) if l.config == rl => l,
                _ => Arc::new(TenantLimiter::new(rl)),
            });
            // A tenant with a backend user of its own has routers (and
            // connections) of its own, logged in as that user.
            let backend = match &t.backend_auth {
                None => backends[&t.backend].clone(),
                Some(user) => {
                    let same = diff.is_some_and(|d| d.backend(&t.backend) == Change::Same);
                    let kept = old
                        .filter(|o| same && o.config.backend == t.backend && o.config.backend_auth == t.backend_auth)
                        .map(|o| o.backend.clone());
                    kept.unwrap_or_else(|| Arc::new(Router::new(&config.backends[&t.backend].as_user(user), families)))
                }
            };
            let metrics = old.map(|o| o.metrics.clone()).unwrap_or_else(|| {
                Arc::new(TenantMetrics::new(id.as_str(), families.clone(), config.telemetry.hot_keys))
            });
            let near_cache = near_cache(t, old, &backend, &metrics);
            let rt = Arc::new(TenantRt {
                id: id.clone(),
                namespace: t.namespace.clone(),
                shared: backends[&t.backend].clone(),
                backend,
                config: t.clone(),
                limiter,
                connections: old.map(|o| o.connections.clone()).unwrap_or_default(),
                patterns: old.map(|o| o.patterns.clone()).unwrap_or_default(),
                clients: old.map(|o| o.clients.clone()).unwrap_or_default(),
                // New with each generation: a flight's key holds the namespace
                // it was sent with, so one that outlives a reload matches no
                // later request by mistake.
                flights: (t.coalesce != tenantry_config::Coalesce::Off).then(Arc::default),
                quota: old.filter(|_| keys_stay).map(|o| o.quota.clone()).unwrap_or_default(),
                events: old.map(|o| o.events.clone()).unwrap_or_default(),
                scripts: old.filter(|_| keys_stay).map(|o| o.scripts.clone()).unwrap_or_default(),
                metrics,
                near_cache,
                migration,
                moved,
            });
            if let Some(auth) = &t.auth {
                by_username.insert(
                    auth.username.clone(),
                    Credential { tenant: rt.clone(), password_sha256: Sha256::digest(auth.password.expose()).into() },
                );
            }
            if let Some(identity) = &t.certificate {
                by_certificate.insert(identity.clone(), rt.clone());
            }
            tenants.insert(id.clone(), rt);
        }
        let default_tenant = config.default_tenant.as_ref().map(|id| tenants[id].clone());
        Runtime {
            generation: previous.map_or(1, |p| p.generation + 1),
            version,
            limits: config.limits,
            config,
            tenants,
            default_tenant,
            backends,
            by_username,
            by_certificate,
            unprovisioned,
        }
    }

    /// The tenant the first of a client certificate's identities names.
    pub fn tenant_for_certificate(&self, identities: &[CertIdentity]) -> Option<Arc<TenantRt>> {
        identities.iter().find_map(|id| self.by_certificate.get(id).cloned())
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
            // Redis's `default` user is `nopass` out of the box: any password
            // logs in. Here that user is the default tenant, when no tenant
            // claims the name with a password of its own.
            None if username == b"default" => {
                self.default_tenant.clone().map_or(AuthOutcome::WrongPass, AuthOutcome::Ok)
            }
            _ => AuthOutcome::WrongPass,
        }
    }

    /// Builds the running config again, in place: for a change that is not
    /// the config's (a tenant's backend user could not be made). Built from
    /// the runtime current now, with no await before the store, so a reload
    /// applied meanwhile is never undone.
    pub fn rebuild(runtime: &ArcSwap<Runtime>, families: &Arc<Families>) {
        let now = runtime.load_full();
        let same = ConfigDiff::between(&now.config, &now.config);
        let next = Runtime::new(now.config.clone(), now.version.clone(), Some((&now, &same)), families);
        runtime.store(Arc::new(next));
    }

    pub fn all_backends_up(&self) -> bool {
        self.backends.values().all(|b| b.is_up())
    }
}

/// The tenant's migration: the old value while it and the backends stay,
/// else a new one that takes over the old one's barrier state if it is the
/// same move (other settings changed).
fn migration(
    t: &tenantry_config::Tenant,
    old: Option<&Arc<TenantRt>>,
    backends: &HashMap<BackendName, Arc<Router>>,
    diff: Option<&ConfigDiff>,
) -> Option<Arc<Migration>> {
    let spec = t.migrate.as_ref()?;
    let prior = old.and_then(|o| o.migration.as_ref()).filter(|m| m.same_move(t, spec));
    let routers_same =
        diff.is_some_and(|d| d.backend(&t.backend) == Change::Same && d.backend(&spec.to) == Change::Same);
    if let Some(m) = prior.filter(|m| routers_same && m.spec == *spec) {
        return Some(m.clone());
    }
    let (source, target) = (backends[&t.backend].clone(), backends[&spec.to].clone());
    Some(Arc::new(Migration::new(t, spec.clone(), source, target, prior.map(|m| m.sync().clone()))))
}

/// The tenant's near-cache: the old one while its settings, namespace and
/// backend connections stay (its trackers keep running), else a new one
/// with trackers of its own (the old one's stop when it is dropped).
fn near_cache(
    t: &tenantry_config::Tenant,
    old: Option<&Arc<TenantRt>>,
    backend: &Arc<Router>,
    metrics: &Arc<TenantMetrics>,
) -> Option<Arc<NearCache>> {
    let config = t.near_cache.clone()?;
    let kept = old.filter(|o| {
        o.config.near_cache.as_ref() == Some(&config) && o.namespace == t.namespace && Arc::ptr_eq(&o.backend, backend)
    });
    if let Some(cache) = kept.and_then(|o| o.near_cache.clone()) {
        return Some(cache);
    }
    let cache = Arc::new(NearCache::new(config, t.namespace.clone(), metrics.clone()));
    crate::near_cache::spawn(&cache, backend.clone());
    Some(cache)
}
