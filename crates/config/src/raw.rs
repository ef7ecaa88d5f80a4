//! The YAML as written: serde types that reject unknown fields. Values are
//! checked and resolved into `crate::Config` by `crate::validate`.

use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Spanned<OneOrMany>,
    #[serde(default)]
    pub admin: Option<Spanned<String>>,
    #[serde(default)]
    pub limits: Option<Spanned<RawLimits>>,
    pub backends: BTreeMap<String, Spanned<RawBackend>>,
    pub tenants: BTreeMap<String, Spanned<RawTenant>>,
    #[serde(default)]
    pub default_tenant: Option<Spanned<String>>,
    #[serde(default)]
    pub cleanup: Option<Spanned<RawCleanup>>,
    #[serde(default)]
    pub telemetry: Option<Spanned<RawTelemetry>>,
    #[serde(default)]
    pub quotas: Option<Spanned<RawQuotas>>,
}

/// How tenants' memory on shared backends is measured and enforced.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuotas {
    pub scan_keys_per_sec: Option<Spanned<u64>>,
    pub sample_one_in: Option<Spanned<u64>>,
    pub eviction_samples: Option<Spanned<u64>>,
    pub refresh: Option<Spanned<String>>,
    pub measure_all: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub hot_keys: Option<Spanned<u64>>,
    pub big_value_bytes: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCleanup {
    pub keys_per_sec: Option<Spanned<u64>>,
    pub batch: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(RawListener),
    Many(Vec<RawListener>),
}

/// `127.0.0.1:6379`, or `{ addr: ..., tls: { ... } }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawListener {
    Plain(String),
    Full(RawListenerFull),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerFull {
    pub addr: String,
    #[serde(default)]
    pub tls: Option<RawListenerTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    pub cert_file: String,
    pub key_file: String,
    #[serde(default)]
    pub client_ca_file: Option<String>,
}

/// TLS towards a backend's nodes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackendTls {
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    #[serde(default)]
    pub server_name: Option<Spanned<String>>,
    #[serde(default)]
    pub cert_file: Option<Spanned<String>>,
    #[serde(default)]
    pub key_file: Option<Spanned<String>>,
    #[serde(default)]
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_bulk_bytes: Option<Spanned<String>>,
    pub max_args: Option<Spanned<u64>>,
    pub max_inline_bytes: Option<Spanned<String>>,
    pub max_clients: Option<Spanned<u64>>,
    pub max_pipeline: Option<Spanned<u64>>,
    pub max_pipeline_bytes: Option<Spanned<String>>,
    pub output_soft: Option<Spanned<String>>,
    pub output_soft_seconds: Option<Spanned<u64>>,
    pub output_hard: Option<Spanned<String>>,
    pub request_read_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub kind: Spanned<String>,
    pub nodes: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub connections: Option<Spanned<u64>>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    #[serde(default)]
    pub password_file: Option<Spanned<String>>,
    #[serde(default)]
    pub password_env: Option<Spanned<String>>,
    #[serde(default)]
    pub connect_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub request_timeout: Option<Spanned<String>>,
    /// cluster: how often the slot map is re-read when nothing forced it;
    /// sentinel: how often the sentinels are asked again.
    #[serde(default)]
    pub topology_refresh: Option<Spanned<String>>,
    /// sentinel: the name the sentinels monitor the master by.
    #[serde(default)]
    pub master_name: Option<Spanned<String>>,
    /// sentinel: credentials for the sentinels themselves (`password` and
    /// `username` are the data nodes').
    #[serde(default)]
    pub sentinel_auth: Option<Spanned<RawSentinelAuth>>,
    /// ring: twemproxy's key hash (`fnv1a_64`, ...).
    #[serde(default)]
    pub hash: Option<Spanned<String>>,
    /// ring: twemproxy's `hash_tag`, two characters.
    #[serde(default)]
    pub hash_tag: Option<Spanned<String>>,
    #[serde(default)]
    pub tls: Option<Spanned<RawBackendTls>>,
    /// Create and update each tenant's `backend_auth` user with `ACL SETUSER`
    /// (as the backend's own user, which needs the right to).
    #[serde(default)]
    pub provision_acl: Option<bool>,
}

/// A password given inline (`password`), in a file (`password_file`) or in an
/// environment variable (`password_env`). serde cannot combine `flatten` with
/// `deny_unknown_fields`, so the three fields are repeated where a secret goes.
pub struct RawSecret<'a> {
    pub password: &'a Option<Spanned<String>>,
    pub password_file: &'a Option<Spanned<String>>,
    pub password_env: &'a Option<Spanned<String>>,
}

impl RawBackend {
    pub fn secret(&self) -> RawSecret<'_> {
        RawSecret { password: &self.password, password_file: &self.password_file, password_env: &self.password_env }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSentinelAuth {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    #[serde(default)]
    pub password_file: Option<Spanned<String>>,
    #[serde(default)]
    pub password_env: Option<Spanned<String>>,
}

impl RawSentinelAuth {
    pub fn secret(&self) -> RawSecret<'_> {
        RawSecret { password: &self.password, password_file: &self.password_file, password_env: &self.password_env }
    }
}

impl RawTenantAuth {
    pub fn secret(&self) -> RawSecret<'_> {
        RawSecret { password: &self.password, password_file: &self.password_file, password_env: &self.password_env }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub backend: Spanned<String>,
    pub namespace: Spanned<String>,
    #[serde(default)]
    pub auth: Option<Spanned<RawTenantAuth>>,
    #[serde(default)]
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    #[serde(default)]
    pub commands: Option<Spanned<RawCommands>>,
    #[serde(default)]
    pub limits: Option<Spanned<RawTenantLimits>>,
    #[serde(default)]
    pub ttl: Option<Spanned<RawTtl>>,
    #[serde(default)]
    pub scripts: Option<bool>,
    /// The keyspace event classes it may enable, in Redis's letters.
    #[serde(default)]
    pub keyspace_events: Option<Spanned<String>>,
    /// The backend user this tenant's commands run as.
    #[serde(default)]
    pub backend_auth: Option<Spanned<RawBackendUser>>,
    #[serde(default)]
    pub memory_quota: Option<Spanned<String>>,
    #[serde(default)]
    pub eviction: Option<Spanned<String>>,
    #[serde(default)]
    pub read_from_replicas: Option<Spanned<String>>,
    #[serde(default)]
    pub coalesce: Option<Spanned<RawCoalesce>>,
    #[serde(default)]
    pub near_cache: Option<Spanned<RawNearCache>>,
    #[serde(default)]
    pub migrate: Option<Spanned<RawMigrate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMigrate {
    pub to: Spanned<String>,
    #[serde(default)]
    pub namespace: Option<Spanned<String>>,
    #[serde(default)]
    pub keys_per_sec: Option<Spanned<u64>>,
    #[serde(default)]
    pub verify_sample: Option<Spanned<u64>>,
    #[serde(default)]
    pub keep_old: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNearCache {
    pub max_bytes: Option<Spanned<String>>,
    pub max_staleness: Option<Spanned<String>>,
    pub keyspaces: Option<Vec<String>>,
}

/// `coalesce: true`, or `coalesce: { keyspaces: [a, b] }`. Read by hand
/// rather than `untagged`, whose error for anything else names this type
/// instead of saying what is expected.
#[derive(Debug)]
pub enum RawCoalesce {
    Switch(bool),
    Keyspaces(RawCoalesceKeyspaces),
}

impl<'de> Deserialize<'de> for RawCoalesce {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawCoalesce;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false, or { keyspaces: [...] }")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RawCoalesce, E> {
                Ok(RawCoalesce::Switch(v))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<RawCoalesce, M::Error> {
                let keyspaces = Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawCoalesce::Keyspaces(keyspaces))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCoalesceKeyspaces {
    pub keyspaces: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub ops_per_sec: Option<Spanned<u64>>,
    pub burst: Option<Spanned<u64>>,
    pub bytes_per_sec: Option<Spanned<String>>,
    pub bytes_burst: Option<Spanned<String>>,
    pub on_exceed: Option<Spanned<String>>,
    pub max_delay: Option<Spanned<String>>,
    pub per_connection_ops_per_sec: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommands {
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenantLimits {
    pub max_key_bytes: Option<Spanned<String>>,
    pub max_value_bytes: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<u64>>,
    pub max_pipeline: Option<Spanned<u64>>,
    pub max_pipeline_bytes: Option<Spanned<String>>,
    pub output_soft: Option<Spanned<String>>,
    pub output_soft_seconds: Option<Spanned<u64>>,
    pub output_hard: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTtl {
    pub default: Option<Spanned<String>>,
    pub max: Option<Spanned<String>>,
    pub jitter: Option<Spanned<String>>,
    #[serde(default)]
    pub keyspaces: BTreeMap<String, Spanned<RawTtlRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTtlRule {
    pub default: Option<Spanned<String>>,
    pub max: Option<Spanned<String>>,
    pub jitter: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenantAuth {
    #[serde(default)]
    pub username: Option<Spanned<String>>,
    /// A client certificate's URI or DNS subject alternative name.
    #[serde(default)]
    pub tls_san: Option<Spanned<String>>,
    /// A client certificate's subject common name.
    #[serde(default)]
    pub tls_cn: Option<Spanned<String>>,
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    #[serde(default)]
    pub password_file: Option<Spanned<String>>,
    #[serde(default)]
    pub password_env: Option<Spanned<String>>,
}

/// A backend user of one tenant: its commands run on connections logged in as it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackendUser {
    pub username: Spanned<String>,
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    #[serde(default)]
    pub password_file: Option<Spanned<String>>,
    #[serde(default)]
    pub password_env: Option<Spanned<String>>,
}

impl RawBackendUser {
    pub fn secret(&self) -> RawSecret<'_> {
        RawSecret { password: &self.password, password_file: &self.password_file, password_env: &self.password_env }
    }
}
