//! Raw YAML values to a checked `Config`, collecting every error with its location.

use crate::error::{ConfigError, ConfigErrors};
use crate::model::*;
use crate::raw::*;
use crate::tls::*;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tenantry_protocol::{Limits, Namespace};

/// Keys tenantry itself keeps on backends (the event reporter's lease).
pub const RESERVED_PREFIX: &str = "tenantry:";

/// `output_soft`, `output_soft_seconds`, `output_hard` as written.
pub(crate) type RawOutputLimits<'a> =
    (&'a Option<Spanned<String>>, &'a Option<Spanned<u64>>, &'a Option<Spanned<String>>);

pub(crate) struct Checker<'a> {
    file: &'a Path,
    /// Relative `password_file` paths are relative to the config's directory.
    dir: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    pub(crate) fn error(&mut self, at: Location, field: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line: at.line(),
            column: at.column(),
            field: field.to_string(),
            message: message.into(),
        });
    }

    pub(crate) fn addr(&mut self, raw: &Spanned<String>, field: &str) -> Option<SocketAddr> {
        match raw.value.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(raw.referenced, field, format!("{:?} is not an IP:port address", raw.value));
                None
            }
        }
    }

    pub(crate) fn size(&mut self, raw: &Option<Spanned<String>>, field: &str, default: usize) -> usize {
        let Some(raw) = raw else { return default };
        match parse_size(&raw.value) {
            Some(n) => n,
            None => {
                self.error(raw.referenced, field, format!("{:?} is not a size (e.g. 512MiB, 64KiB, 1000)", raw.value));
                default
            }
        }
    }

    pub(crate) fn duration(&mut self, raw: &Option<Spanned<String>>, field: &str, default: Duration) -> Duration {
        let Some(raw) = raw else { return default };
        match humantime::parse_duration(&raw.value) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                self.error(
                    raw.referenced,
                    field,
                    format!("{:?} is not a positive duration (e.g. 500ms, 5s)", raw.value),
                );
                default
            }
        }
    }

    /// A size of at least one byte.
    pub(crate) fn positive_size(&mut self, raw: &Option<Spanned<String>>, field: &str, default: usize) -> usize {
        let n = self.size(raw, field, default);
        if n == 0 {
            let at = raw.as_ref().expect("0 is never a default").referenced;
            self.error(at, field, "must be at least 1 byte");
            return default;
        }
        n
    }

    /// `output_soft`, `output_soft_seconds` and `output_hard` of `field`,
    /// each defaulting to `base`'s; the soft limit may not exceed the hard one.
    pub(crate) fn output_limits(
        &mut self,
        (soft, seconds, hard): RawOutputLimits<'_>,
        field: &str,
        base: &OutputLimits,
        at: Location,
    ) -> OutputLimits {
        let limits = OutputLimits {
            soft: self.positive_size(soft, &format!("{field}.output_soft"), base.soft),
            soft_for: Duration::from_secs(self.count(
                seconds,
                &format!("{field}.output_soft_seconds"),
                base.soft_for.as_secs() as usize,
            ) as u64),
            hard: self.positive_size(hard, &format!("{field}.output_hard"), base.hard),
        };
        if limits.soft > limits.hard {
            let at = soft.as_ref().or(hard.as_ref()).map_or(at, |s| s.referenced);
            self.error(
                at,
                &format!("{field}.output_soft"),
                format!("{} is above output_hard ({})", limits.soft, limits.hard),
            );
        }
        limits
    }

    pub(crate) fn count(&mut self, raw: &Option<Spanned<u64>>, field: &str, default: usize) -> usize {
        match raw {
            None => default,
            Some(n) if n.value > 0 => n.value as usize,
            Some(n) => {
                self.error(n.referenced, field, "must be at least 1");
                default
            }
        }
    }

    /// A path the config names: relative ones are relative to its directory.
    pub(crate) fn path(&self, raw: &str) -> PathBuf {
        self.dir.join(raw)
    }

    pub(crate) fn secret(&mut self, raw: RawSecret<'_>, at: Location, field: &str) -> Option<Secret> {
        let given = [raw.password.is_some(), raw.password_file.is_some(), raw.password_env.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            self.error(at, field, "give only one of password, password_file, password_env");
            return None;
        }
        if let Some(p) = raw.password {
            return Some(Secret::new(p.value.as_bytes()));
        }
        if let Some(p) = raw.password_file {
            let path = self.path(&p.value);
            return match std::fs::read(&path) {
                // A trailing newline in a secret file is almost never part of the password.
                Ok(bytes) => Some(Secret::new(bytes.strip_suffix(b"\n").unwrap_or(&bytes))),
                Err(e) => {
                    self.error(
                        p.referenced,
                        &format!("{field}.password_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            };
        }
        if let Some(v) = raw.password_env {
            return match (self.env)(&v.value) {
                Some(val) => Some(Secret::new(val.as_bytes())),
                None => {
                    self.error(
                        v.referenced,
                        &format!("{field}.password_env"),
                        format!("environment variable {} is not set", v.value),
                    );
                    None
                }
            };
        }
        None
    }
}

/// Sizes as `123`, `64KiB`, `512MiB`, `1GiB` (also `KB`/`MB`/`GB`, powers of 1000).
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().ok()?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

pub(crate) fn validate(
    raw: RawConfig,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut c = Checker { file, dir, env, errors: Vec::new() };

    let listen_raw: Vec<&RawListener> = match &raw.listen.value {
        OneOrMany::One(a) => vec![a],
        OneOrMany::Many(v) => v.iter().collect(),
    };
    if listen_raw.is_empty() {
        c.error(raw.listen.referenced, "listen", "at least one address is needed");
    }
    let listen: Vec<Listener> = listen_raw
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let field = if listen_raw.len() == 1 { "listen".to_string() } else { format!("listen[{i}]") };
            c.listener(l, raw.listen.referenced, &field)
        })
        .collect();
    let client_certs = listen.iter().any(|l| l.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some()));
    let admin = raw.admin.as_ref().and_then(|a| c.addr(a, "admin"));

    let mut limits = ClientLimits::default();
    if let Some(l) = &raw.limits {
        let l = &l.value;
        let d = Limits::default();
        limits.protocol = Limits {
            max_bulk_bytes: c.size(&l.max_bulk_bytes, "limits.max_bulk_bytes", d.max_bulk_bytes),
            max_args: c.count(&l.max_args, "limits.max_args", d.max_args),
            max_inline_bytes: c.size(&l.max_inline_bytes, "limits.max_inline_bytes", d.max_inline_bytes),
        };
        for (value, name, most) in [
            (limits.protocol.max_bulk_bytes, "max_bulk_bytes", d.max_bulk_bytes),
            (limits.protocol.max_args, "max_args", d.max_args),
            (limits.protocol.max_inline_bytes, "max_inline_bytes", d.max_inline_bytes),
        ] {
            if value > most {
                c.error(
                    l_loc(&raw),
                    &format!("limits.{name}"),
                    format!("{value} is above Redis's own limit of {most}"),
                );
            }
        }
        limits.max_clients = c.count(&l.max_clients, "limits.max_clients", limits.max_clients);
        limits.max_pipeline = c.count(&l.max_pipeline, "limits.max_pipeline", limits.max_pipeline);
        limits.max_pipeline_bytes =
            c.positive_size(&l.max_pipeline_bytes, "limits.max_pipeline_bytes", limits.max_pipeline_bytes);
        let out = (&l.output_soft, &l.output_soft_seconds, &l.output_hard);
        limits.output = c.output_limits(out, "limits", &limits.output, l_loc(&raw));
        limits.request_read_timeout =
            c.duration(&l.request_read_timeout, "limits.request_read_timeout", limits.request_read_timeout);
    }
    let global_output = limits.output;

    let mut backends = BTreeMap::new();
    for (name, b) in &raw.backends {
        let field = format!("backends.{name}");
        let at = b.referenced;
        let b = &b.value;
        let mut nodes = Vec::new();
        let mut weights = Vec::new();
        let mut names = Vec::new();
        let is_ring = b.kind.value == "ring";
        for n in &b.nodes.value {
            // A ring node is written as twemproxy writes a server:
            // `host:port[:weight] [name]`.
            let (addr, weight, name) = if is_ring { ring_node(&n.value) } else { (n.value.as_str(), Some(1), None) };
            if valid_host_port(addr) && weight.is_some() {
                nodes.push(BackendAddr::new(addr));
                weights.push(weight.unwrap_or(1));
                names.push(name.map_or_else(|| ketama_name(addr), str::to_string));
            } else if is_ring {
                c.error(
                    n.referenced,
                    &format!("{field}.nodes"),
                    format!("{:?} is not host:port[:weight] [name]", n.value),
                );
            } else {
                c.error(n.referenced, &format!("{field}.nodes"), format!("{:?} is not host:port", n.value));
            }
        }
        if b.nodes.value.is_empty() {
            c.error(b.nodes.referenced, &format!("{field}.nodes"), "at least one node is needed");
        }
        let only = |c: &mut Checker, raw: &Option<Spanned<String>>, name: &str, kind: &str| {
            if let Some(v) = raw {
                c.error(v.referenced, &format!("{field}.{name}"), format!("only a {kind} backend has {name}"));
            }
        };
        let kind = match b.kind.value.as_str() {
            "standalone" => {
                if b.nodes.value.len() > 1 {
                    c.error(b.nodes.referenced, &format!("{field}.nodes"), "a standalone backend has exactly one node");
                }
                BackendKind::Standalone
            }
            "sentinel" => {
                let master_name = match &b.master_name {
                    Some(n) if !n.value.is_empty() => n.value.clone(),
                    _ => {
                        c.error(at, &format!("{field}.master_name"), "a sentinel backend needs master_name");
                        String::new()
                    }
                };
                let auth = b.sentinel_auth.as_ref().and_then(|a| {
                    let sf = format!("{field}.sentinel_auth");
                    let password = c.secret(a.value.secret(), a.referenced, &sf);
                    if password.is_none() {
                        c.error(a.referenced, &sf, "sentinel_auth needs a password");
                    }
                    password.map(|password| BackendAuth { username: a.value.username.clone(), password })
                });
                let refresh =
                    c.duration(&b.topology_refresh, &format!("{field}.topology_refresh"), Duration::from_secs(10));
                BackendKind::Sentinel(SentinelSpec { master_name, auth, refresh })
            }
            "cluster" => BackendKind::Cluster {
                topology_refresh: c.duration(
                    &b.topology_refresh,
                    &format!("{field}.topology_refresh"),
                    Duration::from_secs(10),
                ),
            },
            "ring" => {
                let hash = match &b.hash {
                    None => RingHash::Fnv1a64,
                    Some(h) => {
                        RingHash::NAMES.iter().find(|(n, _)| *n == h.value).map(|(_, k)| *k).unwrap_or_else(|| {
                            let names: Vec<_> = RingHash::NAMES.iter().map(|(n, _)| *n).collect();
                            c.error(
                                h.referenced,
                                &format!("{field}.hash"),
                                format!("unknown hash {:?} (supported: {})", h.value, names.join(", ")),
                            );
                            RingHash::Fnv1a64
                        })
                    }
                };
                let hash_tag = b.hash_tag.as_ref().and_then(|t| match t.value.as_bytes() {
                    [a, b] => Some([*a, *b]),
                    _ => {
                        c.error(t.referenced, &format!("{field}.hash_tag"), "a hash tag is two characters, as \"{}\"");
                        None
                    }
                });
                BackendKind::Ring(RingSpec { hash, hash_tag, weights, names })
            }
            other => {
                c.error(
                    b.kind.referenced,
                    &format!("{field}.kind"),
                    format!("unknown kind {other:?} (supported: standalone, cluster, ring, sentinel)"),
                );
                BackendKind::Standalone
            }
        };
        if !matches!(kind, BackendKind::Cluster { .. } | BackendKind::Sentinel(_)) {
            only(&mut c, &b.topology_refresh, "topology_refresh", "cluster or sentinel");
        }
        if !matches!(kind, BackendKind::Sentinel(_)) {
            only(&mut c, &b.master_name, "master_name", "sentinel");
            if let Some(a) = &b.sentinel_auth {
                c.error(a.referenced, &format!("{field}.sentinel_auth"), "only a sentinel backend has sentinel_auth");
            }
        }
        if !matches!(kind, BackendKind::Ring(_)) {
            only(&mut c, &b.hash, "hash", "ring");
            only(&mut c, &b.hash_tag, "hash_tag", "ring");
        }
        let password = c.secret(b.secret(), at, &field);
        if b.username.is_some() && password.is_none() {
            c.error(at, &format!("{field}.username"), "a username needs a password");
        }
        let backend = Backend {
            name: BackendName::new(name),
            kind,
            nodes,
            connections: c.count(&b.connections, &format!("{field}.connections"), 1),
            auth: password.map(|password| BackendAuth { username: b.username.clone(), password }),
            tls: b.tls.as_ref().map(|t| c.backend_tls(t, &format!("{field}.tls"))),
            provision_acl: b.provision_acl.unwrap_or(false),
            connect_timeout: c.duration(
                &b.connect_timeout,
                &format!("{field}.connect_timeout"),
                Duration::from_secs(1),
            ),
            request_timeout: c.duration(
                &b.request_timeout,
                &format!("{field}.request_timeout"),
                Duration::from_secs(5),
            ),
        };
        backends.insert(backend.name.clone(), backend);
    }

    let mut tenants: BTreeMap<TenantId, Tenant> = BTreeMap::new();
    let mut usernames: BTreeMap<String, TenantId> = BTreeMap::new();
    let mut identities: BTreeMap<CertIdentity, TenantId> = BTreeMap::new();
    let mut backend_users: BTreeMap<(String, String), TenantId> = BTreeMap::new();
    for (name, t) in &raw.tenants {
        let field = format!("tenants.{name}");
        let t = &t.value;
        let backend = BackendName::new(&t.backend.value);
        if !backends.contains_key(&backend) {
            c.error(
                t.backend.referenced,
                &format!("{field}.backend"),
                format!("no backend named {:?}", t.backend.value),
            );
        }
        let namespace = match Namespace::new(&t.namespace.value) {
            Ok(ns) => Some(ns),
            Err(e) => {
                c.error(t.namespace.referenced, &format!("{field}.namespace"), format!("{:?} {e}", t.namespace.value));
                None
            }
        };
        if let Some(ns) = &namespace {
            if ns.overlaps(&Namespace::new(RESERVED_PREFIX).expect("valid")) {
                c.error(
                    t.namespace.referenced,
                    &format!("{field}.namespace"),
                    format!("{:?} overlaps {RESERVED_PREFIX:?}, where tenantry keeps its own keys", t.namespace.value),
                );
            }
            for other in tenants.values().filter(|o| o.backend == backend) {
                if other.namespace.overlaps(ns) {
                    c.error(
                        t.namespace.referenced,
                        &format!("{field}.namespace"),
                        format!(
                            "{:?} overlaps tenant {}'s {:?} on the same backend: one could read the other's keys",
                            t.namespace.value,
                            other.id,
                            other.namespace.to_string()
                        ),
                    );
                }
            }
        }
        let auth = t.auth.as_ref().and_then(|a| {
            let Some(username) = &a.value.username else {
                let given = [&a.value.password, &a.value.password_file, &a.value.password_env];
                if given.iter().any(|g| g.is_some()) {
                    c.error(a.referenced, &format!("{field}.auth.username"), "a password needs a username");
                } else if a.value.tls_san.is_none() && a.value.tls_cn.is_none() {
                    c.error(a.referenced, &format!("{field}.auth"), "give username and password, or tls_san or tls_cn");
                }
                return None;
            };
            let user = username.value.clone();
            if let Some(owner) = usernames.get(&user) {
                c.error(
                    username.referenced,
                    &format!("{field}.auth.username"),
                    format!("{user:?} is already tenant {owner}'s username"),
                );
            }
            usernames.insert(user.clone(), TenantId::new(name));
            match c.secret(a.value.secret(), a.referenced, &format!("{field}.auth")) {
                Some(password) => Some(TenantAuth { username: user, password }),
                None => {
                    if a.value.password.is_none() && a.value.password_file.is_none() && a.value.password_env.is_none() {
                        c.error(
                            a.referenced,
                            &format!("{field}.auth"),
                            "a password is needed (password, password_file or password_env)",
                        );
                    }
                    None
                }
            }
        });
        let certificate = t.auth.as_ref().and_then(|a| {
            let id = c.cert_identity(&a.value.tls_san, &a.value.tls_cn, a.referenced, &format!("{field}.auth"))?;
            if let Some(owner) = identities.insert(id.clone(), TenantId::new(name)) {
                c.error(a.referenced, &format!("{field}.auth"), format!("{id} already chooses tenant {owner}"));
            }
            if !client_certs {
                c.error(
                    a.referenced,
                    &format!("{field}.auth"),
                    "no listener asks for client certificates (listen: tls: client_ca_file)",
                );
            }
            Some(id)
        });
        let backend_auth = t.backend_auth.as_ref().and_then(|u| {
            let field = format!("{field}.backend_auth");
            let password = c.secret(u.value.secret(), u.referenced, &field);
            if password.is_none()
                && u.value.password.is_none()
                && u.value.password_file.is_none()
                && u.value.password_env.is_none()
            {
                c.error(u.referenced, &field, "a password is needed (password, password_file or password_env)");
            }
            let username = u.value.username.value.clone();
            if username.is_empty() || username.contains(char::is_whitespace) || username == "default" {
                c.error(
                    u.value.username.referenced,
                    &format!("{field}.username"),
                    format!("{username:?} cannot be a tenant's own user"),
                );
            }
            if let Some(other) = backend_users.insert((t.backend.value.clone(), username.clone()), TenantId::new(name))
            {
                c.error(
                    u.value.username.referenced,
                    &format!("{field}.username"),
                    format!("{username:?} is already tenant {other}'s backend user"),
                );
            }
            password.map(|password| BackendUser { username, password })
        });
        let rate_limit = t.rate_limit.as_ref().and_then(|r| c.rate_limit(r, &format!("{field}.rate_limit")));
        let commands = t.commands.as_ref().map(|r| c.commands(r, &format!("{field}.commands"))).unwrap_or_default();
        let limits = t
            .limits
            .as_ref()
            .map(|r| c.tenant_limits(r, &format!("{field}.limits"), &global_output))
            .unwrap_or_default();
        let ttl = t.ttl.as_ref().map(|r| c.ttl(r, &format!("{field}.ttl"))).unwrap_or_default();
        let memory = c.memory_quota(t, &field);
        let read_from = match &t.read_from_replicas {
            None => ReadFrom::Never,
            Some(r) => {
                let read_from = match r.value.as_str() {
                    "never" => ReadFrom::Never,
                    "prefer" => ReadFrom::Prefer,
                    "always" => ReadFrom::Always,
                    other => {
                        c.error(
                            r.referenced,
                            &format!("{field}.read_from_replicas"),
                            format!("{other:?} is not one of never, prefer, always"),
                        );
                        ReadFrom::Never
                    }
                };
                let kind = raw.backends.get(t.backend.value.as_str()).map(|b| b.value.kind.value.as_str());
                if read_from != ReadFrom::Never && kind.is_some_and(|k| k != "cluster" && k != "sentinel") {
                    c.error(
                        r.referenced,
                        &format!("{field}.read_from_replicas"),
                        "replicas are known only on a cluster or sentinel backend",
                    );
                }
                read_from
            }
        };
        let coalesce = match t.coalesce.as_ref().map(|c| &c.value) {
            None | Some(RawCoalesce::Switch(false)) => Coalesce::Off,
            Some(RawCoalesce::Switch(true)) => Coalesce::All,
            Some(RawCoalesce::Keyspaces(k)) => {
                if k.keyspaces.is_empty() {
                    let at = t.coalesce.as_ref().map_or(Location::UNKNOWN, |c| c.referenced);
                    c.error(at, &format!("{field}.coalesce.keyspaces"), "name at least one keyspace, or say false");
                }
                Coalesce::Keyspaces(k.keyspaces.iter().map(|k| k.as_bytes().to_vec()).collect())
            }
        };
        let near_cache = t.near_cache.as_ref().map(|n| {
            let r = &n.value;
            let max_bytes = c.size(&r.max_bytes, &format!("{field}.near_cache.max_bytes"), 64 << 20);
            let max_staleness =
                c.duration(&r.max_staleness, &format!("{field}.near_cache.max_staleness"), Duration::from_millis(100));
            if max_staleness < Duration::from_millis(4) {
                c.error(n.referenced, &format!("{field}.near_cache.max_staleness"), "at least 4ms");
            }
            let kind = raw.backends.get(t.backend.value.as_str()).map(|b| b.value.kind.value.as_str());
            if kind.is_some_and(|k| k != "standalone" && k != "cluster") {
                c.error(
                    n.referenced,
                    &format!("{field}.near_cache"),
                    "only on a standalone or cluster backend (a ring or sentinel backend's nodes are not tracked)",
                );
            }
            let keyspaces = r.keyspaces.as_ref().map(|k| k.iter().map(|k| k.as_bytes().to_vec()).collect());
            NearCache { max_bytes, max_staleness, keyspaces }
        });
        let migrate = crate::migrate::migrate(&mut c, &field, &raw, t);
        if let Some(namespace) = namespace {
            let id = TenantId::new(name);
            // A backend user limited to the namespace refuses any key a script
            // builds outside it: scripts are safe there, and on by default.
            let scripts = t.scripts.unwrap_or(backend_auth.is_some());
            let keyspace_events = match &t.keyspace_events {
                None => tenantry_protocol::events::Flags::default(),
                Some(k) => tenantry_protocol::events::Flags::parse(k.value.as_bytes()).unwrap_or_else(|| {
                    c.error(
                        k.referenced,
                        &format!("{field}.keyspace_events"),
                        "not a notify-keyspace-events value: use Redis's class letters (K, E, A, g, $, l, s, h, z, x, e, t, d, m, n)",
                    );
                    Default::default()
                }),
            };
            tenants.insert(
                id.clone(),
                Tenant {
                    id,
                    backend,
                    namespace,
                    auth,
                    certificate,
                    backend_auth,
                    rate_limit,
                    commands,
                    limits,
                    ttl,
                    scripts,
                    keyspace_events,
                    memory,
                    read_from,
                    coalesce,
                    near_cache,
                    migrate,
                },
            );
        }
    }
    crate::migrate::check_targets(&mut c, &raw, &tenants);
    if raw.tenants.is_empty() {
        c.error(Location::UNKNOWN, "tenants", "at least one tenant is needed");
    }

    let default_tenant = raw.default_tenant.as_ref().map(|d| {
        if !raw.tenants.contains_key(&d.value) {
            c.error(d.referenced, "default_tenant", format!("no tenant named {:?}", d.value));
        }
        TenantId::new(&d.value)
    });

    let mut cleanup = Cleanup::default();
    if let Some(raw_cleanup) = &raw.cleanup {
        let r = &raw_cleanup.value;
        let keys = c.count(&r.keys_per_sec, "cleanup.keys_per_sec", cleanup.keys_per_sec as usize);
        cleanup.keys_per_sec = keys.min(u32::MAX as usize) as u32;
        cleanup.batch = c.count(&r.batch, "cleanup.batch", cleanup.batch as usize).min(100_000) as u32;
    }

    let mut telemetry = Telemetry::default();
    if let Some(raw_t) = &raw.telemetry {
        let r = &raw_t.value;
        telemetry.hot_keys = c.count(&r.hot_keys, "telemetry.hot_keys", telemetry.hot_keys).min(1000);
        telemetry.big_value_bytes = c.size(&r.big_value_bytes, "telemetry.big_value_bytes", telemetry.big_value_bytes);
    }

    let quotas = raw.quotas.as_ref().map(|q| c.quotas(&q.value)).unwrap_or_default();

    if c.errors.is_empty() {
        Ok(Config { listen, admin, limits, backends, tenants, default_tenant, cleanup, telemetry, quotas })
    } else {
        Err(ConfigErrors(c.errors))
    }
}

fn l_loc(raw: &RawConfig) -> Location {
    raw.limits.as_ref().map(|l| l.referenced).unwrap_or(Location::UNKNOWN)
}

/// Splits twemproxy's `host:port[:weight] [name]`; `None` weight when it is not a positive number.
fn ring_node(s: &str) -> (&str, Option<u32>, Option<&str>) {
    let (server, name) = match s.split_once(' ') {
        Some((server, name)) if !name.trim().is_empty() => (server, Some(name.trim())),
        _ => (s.trim(), None),
    };
    // `host:port:weight` has two colons (IPv6 hosts are not supported here).
    match server.rsplit_once(':') {
        Some((addr, w)) if addr.contains(':') => (addr, w.parse().ok().filter(|w: &u32| *w > 0), name),
        _ => (server, Some(1), name),
    }
}

/// The name twemproxy makes a server's ketama points from when it has none:
/// `host:port`, or `host` alone on memcached's port 11211.
fn ketama_name(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((host, "11211")) => host.to_string(),
        _ => addr.to_string(),
    }
}

fn valid_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}
