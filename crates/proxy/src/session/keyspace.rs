//! FLUSHDB / FLUSHALL, DBSIZE and RANDOMKEY for the tenant's keys only. Redis's own
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
        let info = cmd == ConnCommand::Info && wants_keyspace(&req.args[1..]);
        if !info && !matches!(cmd, ConnCommand::Flush | ConnCommand::DbSize | ConnCommand::RandomKey) {
            return None;
        }
        self.state.tenant.as_ref()?;
        // They read or change the keyspace on other connections than the
        // client's batches: its earlier writes must have landed.
        if self.after_earlier_replies(req) {
            return Some(After::Continue);
        }
        if info {
            return self.info_with_keyspace(req);
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

/// INFO's keyspace section walks the tenant's keys (O(keys on the backend)),
/// so it is given when asked for by name (`keyspace`, `all`, `everything`),
/// not with every bare INFO a health check sends.
fn wants_keyspace(sections: &[Bytes]) -> bool {
    sections.iter().any(|s| {
        s.eq_ignore_ascii_case(b"keyspace") || s.eq_ignore_ascii_case(b"all") || s.eq_ignore_ascii_case(b"everything")
    })
}

impl Session {
    fn info_with_keyspace(&mut self, req: &Request) -> Option<After> {
        let tenant = self.state.tenant.clone()?;
        let text = super::connection::info(&self.state, &req.args[1..]);
        let batch = self.state.runtime.load().config.cleanup.batch;
        let nodes = tenant.backend.nodes();
        let ns = tenant.namespace.clone();
        let proto = self.state.proto;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut stats = Ok((0, 0, 0));
            for node in &nodes {
                stats = match (stats, crate::cleanup::keyspace_stats(node, &ns, batch).await) {
                    // avg_ttl: weighted by each node's keys with a TTL.
                    (Ok((k, e, t)), Ok((k2, e2, t2))) => {
                        let avg = (t * e + t2 * e2).checked_div(e + e2).unwrap_or(0);
                        Ok((k + k2, e + e2, avg))
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
            }
            let reply = match stats {
                Ok((keys, expires, avg_ttl)) => {
                    let mut text = text;
                    text.push_str(if text.is_empty() { "# Keyspace\r\n" } else { "\r\n# Keyspace\r\n" });
                    if keys > 0 {
                        text.push_str(&format!("db0:keys={keys},expires={expires},avg_ttl={avg_ttl}\r\n"));
                    }
                    let mut out = bytes::BytesMut::new();
                    tenantry_protocol::encode::Reply { out: &mut out, proto }.text(&text);
                    out.freeze()
                }
                Err(e) => Bytes::from(format!("-ERR INFO keyspace failed: {e}\r\n")),
            };
            let _ = tx.send(Ok(reply));
        });
        self.batcher.deferred(&mut self.replies, &tenant, rx, tenantry_protocol::ReplyKeys::None);
        Some(After::Continue)
    }
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
