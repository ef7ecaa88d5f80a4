//! Scripts per tenant (`crate::tenant::Scripts`): EVAL and SCRIPT LOAD
//! record the script's SHA as the tenant's; EVALSHA runs only a script the
//! tenant loaded since its last SCRIPT FLUSH, else `-NOSCRIPT` without
//! reaching the backend; SCRIPT EXISTS answers from the tenant's own SHAs
//! and SCRIPT FLUSH empties them. The backend's script cache itself is
//! never flushed: other tenants' scripts stay loaded.

use super::connection::After;
use super::Session;
use crate::backend::NodePool;
use crate::error::Error;
use crate::telemetry::ErrorKind;
use crate::tenant::{scripts_key, Known, Sha, TenantRt};
use bytes::Bytes;
use std::sync::Arc;
use tenantry_protocol::command::ScriptOp;
use tenantry_protocol::{answer, ReplyKeys, Request};
use tokio::sync::oneshot;

const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// EVAL, EVAL_RO, SCRIPT LOAD: the script at argument `at` becomes one of
/// the tenant's.
pub(super) fn record_script(tenant: &TenantRt, req: &Request, at: usize) {
    let Some(body) = req.args.get(at) else { return };
    let sha = Sha::of_script(body);
    if tenant.scripts.loaded(sha) {
        let (node, key) = set_of(tenant);
        tokio::spawn(async move {
            if let Err(e) = node.call(&[b"SADD", &key, sha.as_bytes()]).await {
                tracing::debug!(error = %e, "could not record a tenant's script");
            }
        });
    }
}

impl Session {
    /// EVALSHA, EVALSHA_RO: true if the request was answered (NOSCRIPT) or
    /// put off until the backend's set says whether the tenant loaded it.
    pub(super) fn script_by_sha(&mut self, tenant: &Arc<TenantRt>, req: &Request) -> bool {
        let Some(sha) = req.args.get(1).and_then(|a| Sha::parse(a)) else {
            return self.no_script(tenant);
        };
        match tenant.scripts.lookup(sha) {
            Known::Loaded => false,
            Known::Absent => self.no_script(tenant),
            Known::Checking => {
                self.retry_soon(req);
                true
            }
            Known::Unknown => {
                let (node, key) = set_of(tenant);
                let tenant = tenant.clone();
                tokio::spawn(async move {
                    let reply = node.call(&[b"SISMEMBER", &key, sha.as_bytes()]).await;
                    // If the set cannot be read, the backend's own cache decides.
                    let loaded = reply.map_err(Error::from).and_then(|r| Ok(answer::integer(&r)? == 1));
                    tenant.scripts.checked(sha, loaded.unwrap_or(true));
                });
                self.retry_soon(req);
                true
            }
        }
    }

    fn no_script(&mut self, tenant: &TenantRt) -> bool {
        tenant.metrics.error(ErrorKind::NoScript, 1);
        self.error(NOSCRIPT);
        true
    }

    /// Refuses a script (or, `functions`, a function) command of a tenant
    /// without `scripts: true`; true if it did.
    pub(super) fn refused_without_scripts(&mut self, tenant: &TenantRt, functions: bool) -> bool {
        if tenant.config.scripts {
            return false;
        }
        tenant.metrics.error(ErrorKind::NoPerm, 1);
        let (what, which) = if functions { ("use functions", "a function") } else { ("run scripts", "a script") };
        self.refuse(&format!(
            "NOPERM tenant '{}' may not {what}: {which} can reach keys it was not given (set scripts: true to allow them)",
            tenant.id
        ));
        true
    }

    /// SCRIPT EXISTS / FLUSH, for tenants with scripts.
    pub(super) fn script_command(&mut self, op: ScriptOp, req: &Request) -> Option<After> {
        let tenant = self.state.tenant.clone()?;
        if self.refused_without_scripts(&tenant, false) {
            return Some(After::Continue);
        }
        let (node, key) = set_of(&tenant);
        let (tx, rx) = oneshot::channel();
        match op {
            ScriptOp::Exists => {
                let mut args: Vec<Bytes> = vec![Bytes::from_static(b"SMISMEMBER"), Bytes::from(key)];
                // What cannot be a SHA is in no set: lower case, so it matches nothing either.
                args.extend(req.args[2..].iter().map(|a| match Sha::parse(a) {
                    Some(sha) => Bytes::copy_from_slice(sha.as_bytes()),
                    None => a.clone(),
                }));
                tokio::spawn(async move {
                    let args: Vec<&[u8]> = args.iter().map(|a| a.as_ref()).collect();
                    let reply = node.call(&args).await.map_err(Error::from);
                    let _ = tx.send(Ok(reply.unwrap_or_else(|e| error(&e.context("SCRIPT EXISTS failed")))));
                });
            }
            ScriptOp::Flush => {
                let mode = req.args.get(2);
                let ok = mode.is_none_or(|m| m.eq_ignore_ascii_case(b"ASYNC") || m.eq_ignore_ascii_case(b"SYNC"));
                if !ok || req.args.len() > 3 {
                    self.error("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
                    return Some(After::Continue);
                }
                tenant.scripts.flushed();
                // Later commands (an EVALSHA pipelined after it) wait for it.
                let (done_tx, done_rx) = oneshot::channel();
                self.waiting = Some(super::Waiting::on(done_rx));
                tokio::spawn(async move {
                    let reply = match node.call(&[b"DEL", &key]).await {
                        Ok(_) => Bytes::from_static(b"+OK\r\n"),
                        Err(e) => error(&Error::from(e).context("SCRIPT FLUSH failed")),
                    };
                    // Anything this proxy learnt while the set was going is stale.
                    tenant.scripts.flushed();
                    let _ = tx.send(Ok(reply));
                    let _ = done_tx.send(());
                });
            }
        }
        self.batcher.deferred(&mut self.replies, &self.state.tenant.clone()?, rx, ReplyKeys::None);
        Some(After::Continue)
    }
}

/// The node holding the tenant's set of SHAs, and its key there.
fn set_of(tenant: &TenantRt) -> (Arc<NodePool>, Vec<u8>) {
    let key = scripts_key(&tenant.namespace);
    (tenant.shared.node_of_own_key(&key), key)
}

fn error(e: &Error) -> Bytes {
    Bytes::from(format!("-{}\r\n", e.resp()))
}
