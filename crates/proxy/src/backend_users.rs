//! Tenants' own backend users, the second wall: a tenant with
//! `backend_auth` runs its commands as a backend user, so Redis's ACL checks
//! every key a command or a script touches against the user's patterns.
//!
//! Where the backend has `provision_acl`, tenantry creates or updates each
//! such user on every node (masters and replicas: ACLs are per node) with
//! `ACL SETUSER`, limited to the tenant's namespace and the commands its
//! policy allows; everywhere, it reads the user back with `ACL GETUSER`
//! (where its own user may) and warns when it can reach keys or channels
//! outside the namespace. Both run again whenever the config or the nodes
//! change.

use crate::backend::NodePool;
use crate::error::Kind;
use crate::runtime::Runtime;
use crate::telemetry::Families;
use crate::tenant::migration::DIRTY_PREFIX;
use crate::tenant::TenantRt;
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tenantry_config::{BackendUser, CommandRule, TenantId};
use tenantry_protocol::{answer, Namespace};
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(1);

/// Commands tenantry itself sends on a tenant's connections, allowed
/// whatever the tenant's policy: the handshake, and the connection id a
/// subscriber connection reports for client-side caching redirects.
const TENANTRY_NEEDS: [&str; 5] = ["+hello", "+auth", "+client|setname", "+client|id", "+readonly"];

pub async fn supervise(runtime: Arc<ArcSwap<Runtime>>, families: Arc<Families>, shutdown: CancellationToken) {
    // By (node, user): the fingerprint of the rules last set, and last
    // checked; and failures already logged (retried each turn, logged once).
    let mut set: HashMap<(String, String), [u8; 32]> = HashMap::new();
    let mut checked: HashMap<(String, String), [u8; 32]> = HashMap::new();
    let mut failed: HashMap<(String, String), [u8; 32]> = HashMap::new();
    // Nodes that answered no to ACL SETUSER (not merely unreachable).
    let mut refusals: HashMap<(String, String), [u8; 32]> = HashMap::new();
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let rt = runtime.load_full();
        // Tenants whose user a node refused, or (false) every node took.
        let mut outcome: HashMap<TenantId, bool> = HashMap::new();
        for tenant in rt.tenants.values() {
            // As configured: a tenant served without its user still has one to make.
            let Some(user) = rt.config.tenants.get(&tenant.id).and_then(|t| t.backend_auth.as_ref()) else { continue };
            let Some(shared) = rt.backends.get(&tenant.config.backend) else { continue };
            let provision = rt.config.backends.get(&tenant.config.backend).is_some_and(|b| b.provision_acl);
            let rules = setuser_rules(tenant);
            let fingerprint = fingerprint(&rules, user);
            for node in shared.all_nodes() {
                let key = (node.addr().to_string(), user.username.clone());
                if provision && set.get(&key) != Some(&fingerprint) {
                    match set_user(&node, user, &rules).await {
                        Ok(()) => {
                            tracing::info!(tenant = %tenant.id, user = %user.username, node = %node.addr(), "backend user provisioned");
                            set.insert(key.clone(), fingerprint);
                            failed.remove(&key);
                            refusals.remove(&key);
                        }
                        // The node answered no (its own user may not ACL SETUSER,
                        // or it has no ACL): the tenant is served without its user.
                        Err(e) if e.kind() == Kind::Refused => {
                            if refusals.insert(key.clone(), fingerprint) != Some(fingerprint) {
                                tracing::error!(tenant = %tenant.id, user = %user.username, node = %node.addr(), error = %e,
                                    "cannot create the tenant's backend user (provision_acl: ACL SETUSER refused): \
                                     serving the tenant on the backend's own connections with scripts off; retrying")
                            }
                        }
                        Err(e) if failed.get(&key) != Some(&fingerprint) => {
                            failed.insert(key.clone(), fingerprint);
                            tracing::warn!(tenant = %tenant.id, user = %user.username, node = %node.addr(), error = %e,
                                "cannot provision the tenant's backend user (ACL SETUSER); retrying")
                        }
                        Err(_) => {}
                    }
                }
                // (Without provision_acl the user is the operator's: never held back.)
                let refused =
                    provision && set.get(&key) != Some(&fingerprint) && refusals.get(&key) == Some(&fingerprint);
                *outcome.entry(tenant.id.clone()).or_default() |= refused;
                if checked.get(&key) == Some(&fingerprint) || (provision && set.get(&key) != Some(&fingerprint)) {
                    continue;
                }
                checked.insert(key, fingerprint);
                match read_back(&node, user, &tenant.namespace).await {
                    Ok(problems) => {
                        for problem in problems {
                            tracing::warn!(tenant = %tenant.id, user = %user.username, node = %node.addr(), %problem,
                                "the tenant's backend user can reach outside its namespace");
                        }
                    }
                    Err(e) => {
                        tracing::info!(tenant = %tenant.id, user = %user.username, node = %node.addr(), error = %e,
                        "cannot check the tenant's backend user (ACL GETUSER)")
                    }
                }
            }
        }
        for tenant in rt.tenants.values() {
            provision_target(&rt, tenant, &mut set, &mut failed).await;
        }
        let mut changed = false;
        for (id, refused) in outcome {
            changed |= rt.unprovisioned.set(&id, refused);
        }
        if changed {
            // Served with or without its user from now on.
            Runtime::rebuild(&runtime, &families);
        }
    }
}

/// A migrating tenant's user is made on the target too (where it has
/// `provision_acl`), before the cut-over routes the tenant there.
async fn provision_target(
    rt: &Runtime,
    tenant: &TenantRt,
    set: &mut HashMap<(String, String), [u8; 32]>,
    failed: &mut HashMap<(String, String), [u8; 32]>,
) {
    let Some(configured) = rt.config.tenants.get(&tenant.id) else { return };
    let (Some(user), Some(m)) = (configured.backend_auth.as_ref(), configured.migrate.as_ref()) else { return };
    let Some(target) =
        rt.backends.get(&m.to).filter(|_| rt.config.backends.get(&m.to).is_some_and(|b| b.provision_acl))
    else {
        return;
    };
    let ns = m.namespace.as_ref().unwrap_or(&configured.namespace);
    let rules = rules_for(tenant, ns);
    let fingerprint = fingerprint(&rules, user);
    for node in target.all_nodes() {
        let key = (node.addr().to_string(), user.username.clone());
        if set.get(&key) == Some(&fingerprint) {
            continue;
        }
        match set_user(&node, user, &rules).await {
            Ok(()) => {
                tracing::info!(tenant = %tenant.id, user = %user.username, node = %node.addr(),
                    "backend user provisioned on the migration's target");
                set.insert(key.clone(), fingerprint);
                failed.remove(&key);
            }
            Err(e) if failed.get(&key) != Some(&fingerprint) => {
                failed.insert(key, fingerprint);
                tracing::warn!(tenant = %tenant.id, user = %user.username, node = %node.addr(), error = %e,
                    "cannot provision the tenant's backend user on the migration's target; retrying")
            }
            Err(_) => {}
        }
    }
}

/// What the rules and the password were when a user was last set.
fn fingerprint(rules: &[Vec<u8>], user: &BackendUser) -> [u8; 32] {
    let mut h = Sha256::new();
    for r in rules {
        h.update(r);
        h.update(b"\0");
    }
    h.update(user.password.expose());
    h.finalize().into()
}

async fn set_user(node: &NodePool, user: &BackendUser, rules: &[Vec<u8>]) -> crate::error::Result<()> {
    let password = [b">".as_slice(), user.password.expose()].concat();
    let mut args: Vec<&[u8]> = vec![b"ACL", b"SETUSER", user.username.as_bytes(), b"reset", b"on", &password];
    args.extend(rules.iter().map(Vec::as_slice));
    let reply = node.call(&args).await?;
    answer::text(&reply)?;
    Ok(())
}

/// Why a backend user could not be read back.
#[derive(Debug, thiserror::Error)]
enum Unread {
    #[error("no such user")]
    NoUser,
    #[error(transparent)]
    Failed(#[from] crate::error::Error),
}

/// `ACL GETUSER` on `node`: what lets the user reach outside `ns` (see
/// `reaches_outside`), or why it could not be read.
async fn read_back(node: &NodePool, user: &BackendUser, ns: &Namespace) -> Result<Vec<String>, Unread> {
    let reply = node.call(&[b"ACL", b"GETUSER", user.username.as_bytes()]).await.map_err(crate::error::Error::from)?;
    // No such user is a null reply.
    if answer::text(&reply) == Ok(None) {
        return Err(Unread::NoUser);
    }
    let fields = answer::fields(&reply).map_err(crate::error::Error::from)?;
    Ok(reaches_outside(&fields, ns))
}

/// For `tenantry check`: each tenant's backend user as each configured node
/// of its backend reads it back (`ACL GETUSER` on the backend's own
/// connection), and what lets it reach outside the tenant's namespace. A
/// node that cannot be asked is reported too; none of this is an error.
pub async fn check(config: &tenantry_config::Config) -> Vec<String> {
    let mut warnings = Vec::new();
    for (id, tenant) in &config.tenants {
        let Some(user) = &tenant.backend_auth else { continue };
        let Some(backend) = config.backends.get(&tenant.backend) else { continue };
        let tls = backend
            .tls
            .as_ref()
            .map(|t| crate::tls::BackendConnector::new(&backend.name, t).map(Arc::new).map_err(Arc::new));
        if matches!(backend.kind, tenantry_config::BackendKind::Sentinel(_)) {
            // Its nodes are the sentinels; the master is known only at run
            // time, where the user is read back as on any backend.
            warnings.push(format!("tenants.{id}.backend_auth: not checked on sentinel backend '{}'", backend.name));
            continue;
        }
        for addr in &backend.nodes {
            let node = NodePool::new(backend, addr, tls.clone());
            let field = format!("tenants.{id}.backend_auth");
            match read_back(&node, user, &tenant.namespace).await {
                Ok(problems) => warnings.extend(problems.into_iter().map(|p| {
                    format!("{field}: user {} on {addr} can reach outside {}: {p}", user.username, tenant.namespace)
                })),
                Err(Unread::NoUser) => warnings.push(format!(
                    "{field}: no user {} on {addr}{}",
                    user.username,
                    if backend.provision_acl { " yet (provision_acl creates it at start)" } else { "" }
                )),
                Err(e) => warnings.push(format!("{field}: cannot read user {} on {addr}: {e}", user.username)),
            }
        }
    }
    warnings
}

/// `ACL SETUSER` rules after `reset on >password`: the namespace's keys and
/// channels, and the commands the tenant's policy allows.
pub fn setuser_rules(tenant: &TenantRt) -> Vec<Vec<u8>> {
    rules_for(tenant, &tenant.namespace)
}

/// The rules for the tenant's keys under `ns` (its namespace on a
/// migration's target may be another).
fn rules_for(tenant: &TenantRt, ns: &Namespace) -> Vec<Vec<u8>> {
    let pattern = glob_escape(ns.as_bytes());
    let mut rules = vec![[b"~".as_slice(), &pattern, b"*"].concat(), [b"&".as_slice(), &pattern, b"*"].concat()];
    let rule = |sign: &str, r: &CommandRule| match r {
        CommandRule::Command(name) => format!("{sign}{}", name.to_ascii_lowercase()),
        CommandRule::Category { name, .. } => format!("{sign}@{}", name.trim_start_matches('@').to_ascii_lowercase()),
    };
    let commands = &tenant.config.commands;
    if commands.allow.is_empty() {
        rules.push(b"+@all".to_vec());
    } else {
        rules.push(b"-@all".to_vec());
        rules.extend(commands.allow.iter().map(|r| rule("+", r).into_bytes()));
    }
    rules.extend(commands.deny.iter().map(|r| rule("-", r).into_bytes()));
    rules.extend(TENANTRY_NEEDS.iter().map(|r| r.as_bytes().to_vec()));
    if tenant.config.migrate.is_some() {
        // Each write's mark goes in its batch, on its connection: the
        // tenant's own dirty set, write-only (it reads no key there).
        rules.push(crate::tenant::migration::Keys::dirty_acl_pattern(ns).into_bytes());
        rules.push(b"+sadd".to_vec());
    }
    rules
}

/// A namespace as the literal start of a Redis glob pattern.
fn glob_escape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for &b in raw {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// What in an `ACL GETUSER` reply lets the user reach keys or channels
/// outside `ns`: every key and channel pattern must begin with the
/// namespace, literally.
pub fn reaches_outside(fields: &[answer::Field], ns: &Namespace) -> Vec<String> {
    let prefix = glob_escape(ns.as_bytes());
    let within = |pattern: &[u8]| pattern.starts_with(&prefix);
    let mut problems = Vec::new();
    for (name, values) in fields {
        let words = values.iter().flat_map(|v| v.split(|&b| b == b' ')).filter(|w| !w.is_empty());
        match name.as_slice() {
            b"keys" => {
                for w in words {
                    // `~p`, or `%R~p` / `%W~p` / `%RW~p` (read or write only).
                    let pattern = w.iter().position(|&b| b == b'~').map(|i| &w[i + 1..]);
                    // A migration's dirty set, write-only: no key is read there.
                    let marks = w.starts_with(b"%W~") && w[3..].starts_with(DIRTY_PREFIX.as_bytes());
                    if marks {
                        continue;
                    }
                    if w == b"allkeys" || !pattern.is_some_and(within) {
                        problems.push(format!("key pattern {}", String::from_utf8_lossy(w)));
                    }
                }
            }
            b"channels" => {
                for w in words {
                    if w == b"allchannels" || !w.strip_prefix(b"&").is_some_and(within) {
                        problems.push(format!("channel pattern {}", String::from_utf8_lossy(w)));
                    }
                }
            }
            b"selectors" if !values.is_empty() => {
                problems.push("selectors (not checked: they add patterns of their own)".to_string());
            }
            _ => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(keys: &str, channels: &str) -> Vec<answer::Field> {
        vec![
            (b"flags".to_vec(), vec![b"on".to_vec()]),
            (b"keys".to_vec(), vec![keys.as_bytes().to_vec()]),
            (b"channels".to_vec(), vec![channels.as_bytes().to_vec()]),
            (b"selectors".to_vec(), vec![]),
        ]
    }

    #[test]
    fn a_user_limited_to_the_namespace_passes_and_wider_ones_are_named() {
        let ns = Namespace::new("app:").unwrap();
        assert!(reaches_outside(&fields("~app:*", "&app:*"), &ns).is_empty());
        assert!(reaches_outside(&fields("~app:* %R~app:cache:*", "&app:*"), &ns).is_empty());
        assert_eq!(reaches_outside(&fields("~*", "&app:*"), &ns), vec!["key pattern ~*"]);
        assert_eq!(reaches_outside(&fields("allkeys", "allchannels"), &ns).len(), 2);
        assert_eq!(
            reaches_outside(&fields("~app:* ~other:*", "&*"), &ns),
            vec!["key pattern ~other:*", "channel pattern &*"]
        );
        assert_eq!(reaches_outside(&fields("~ap*", ""), &ns), vec!["key pattern ~ap*"]);
    }

    #[test]
    fn glob_characters_in_a_namespace_are_escaped() {
        assert_eq!(glob_escape(b"t[1]:*?\\"), b"t\\[1\\]:\\*\\?\\\\".to_vec());
    }
}
