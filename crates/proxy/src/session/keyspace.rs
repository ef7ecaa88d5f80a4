//! FLUSHDB / FLUSHALL, DBSIZE and RANDOMKEY for the tenant's keys only (INFO: `info.rs`). Redis's own
//! would act on every tenant; tenantry walks the tenant's namespace with SCAN
//! instead (UNLINK in batches of `cleanup.batch`, so the backend is never
//! blocked for long). Commands after a FLUSHDB on the same connection wait
//! until it is done, so they see the tenant's keyspace empty, as in Redis.

use super::connection::After;
use super::Session;
use crate::backend::NodePool;
use crate::cleanup::{count_namespace, delete_namespace, NamespaceScan};
use crate::error::Error;
use bytes::Bytes;
use std::sync::Arc;
use tenantry_protocol::{ConnCommand, Namespace, Protocol, Request};
use tokio::sync::oneshot;

impl Session {
    /// `None` for a command that is not FLUSHDB/FLUSHALL/DBSIZE.
    pub(super) fn keyspace_command(&mut self, cmd: ConnCommand, req: &Request) -> Option<After> {
        if cmd == ConnCommand::Info {
            return self.info(req);
        }
        if !matches!(cmd, ConnCommand::Flush | ConnCommand::DbSize | ConnCommand::RandomKey) {
            return None;
        }
        self.state.tenant.as_ref()?;
        // They read or change the keyspace on other connections than the
        // client's batches: its earlier writes must have landed.
        if self.after_earlier_replies(req) {
            return Some(After::Continue);
        }
        let tenant = self.state.tenant.clone()?;
        let batch = self.state.runtime.load().config.cleanup.batch;
        let nodes = tenant.backend.nodes();
        let ns = tenant.namespace.clone();
        let (tx, rx) = oneshot::channel();
        match cmd {
            ConnCommand::Flush => {
                // ASYNC and SYNC both answer once the keys are gone: later
                // commands must not see them, and that needs the wait.
                let ok =
                    req.args[1..].iter().all(|a| a.eq_ignore_ascii_case(b"ASYNC") || a.eq_ignore_ascii_case(b"SYNC"));
                if !ok || req.args.len() > 2 {
                    self.error("ERR syntax error");
                    return Some(After::Continue);
                }
                let (done_tx, done_rx) = oneshot::channel();
                self.waiting = Some(super::Waiting::on(done_rx));
                self.own_writes.sent();
                let id = tenant.id.clone();
                tokio::spawn(async move {
                    let _ = tx.send(Ok(flush(id, nodes, ns, batch).await));
                    let _ = done_tx.send(());
                });
            }
            ConnCommand::RandomKey => {
                let null: &'static [u8] = if self.state.proto == Protocol::Resp3 { b"_\r\n" } else { b"$-1\r\n" };
                tokio::spawn(async move {
                    let reply = match random_key(&nodes, &ns).await {
                        Ok(Some(key)) => {
                            let client_key = ns.strip(&key).unwrap_or(&key);
                            let mut b = format!("${}\r\n", client_key.len()).into_bytes();
                            b.extend_from_slice(client_key);
                            b.extend_from_slice(b"\r\n");
                            Bytes::from(b)
                        }
                        Ok(None) => Bytes::from_static(null),
                        Err(e) => Bytes::from(format!("-{}\r\n", e.context("RANDOMKEY failed").resp())),
                    };
                    let _ = tx.send(Ok(reply));
                });
            }
            _ => {
                tokio::spawn(async move { tx.send(Ok(dbsize(nodes, ns, batch).await)) });
            }
        }
        self.batcher.deferred(&mut self.replies, &tenant, rx, tenantry_protocol::ReplyKeys::None);
        Some(After::Continue)
    }
}

/// One of the namespace's keys: SCAN pages from a random cursor to the end of
/// the keyspace, then from the start; a random key of the first page that has
/// any. Not uniform over keys (nor is Redis's RANDOMKEY under expiry), but
/// never another tenant's. `None` when the namespace has no key.
async fn random_key(nodes: &[Arc<NodePool>], ns: &Namespace) -> Result<Option<Bytes>, Error> {
    // From a random node on, so each node's keys have their chance.
    let first = fastrand::usize(..nodes.len());
    for node in nodes[first..].iter().chain(&nodes[..first]) {
        let start = Bytes::from(fastrand::u32(..).to_string());
        for cursor in [start, Bytes::from_static(b"0")] {
            let mut scan = NamespaceScan::new(node, ns, 100, cursor);
            while let Some(keys) = scan.next_page().await? {
                if !keys.is_empty() {
                    return Ok(Some(keys[fastrand::usize(..keys.len())].clone()));
                }
            }
        }
    }
    Ok(None)
}

/// FLUSHDB / FLUSHALL: every key of the tenant's namespace, on every node.
async fn flush(id: tenantry_config::TenantId, nodes: Vec<Arc<NodePool>>, ns: Namespace, batch: u32) -> Bytes {
    let (mut deleted, mut failed) = (0, None);
    // A node that fails does not keep the others' keys.
    for node in &nodes {
        match delete_namespace(node, &ns, batch, None, |_| {}).await {
            Ok(n) => deleted += n,
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Some(e) = failed {
        return Bytes::from(format!("-{}\r\n", e.context(format!("FLUSHDB of tenant '{id}' failed")).resp()));
    }
    tracing::info!(tenant = %id, deleted, "FLUSHDB");
    Bytes::from_static(b"+OK\r\n")
}

/// DBSIZE: the tenant's keys, counted on every node.
async fn dbsize(nodes: Vec<Arc<NodePool>>, ns: Namespace, batch: u32) -> Bytes {
    let mut total = 0;
    for node in &nodes {
        match count_namespace(node, &ns, batch).await {
            Ok(n) => total += n,
            Err(e) => return Bytes::from(format!("-{}\r\n", e.context("DBSIZE failed").resp())),
        }
    }
    Bytes::from(format!(":{total}\r\n"))
}
