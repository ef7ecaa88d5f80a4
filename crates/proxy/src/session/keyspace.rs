//! FLUSHDB / FLUSHALL, DBSIZE and RANDOMKEY for the tenant's keys only (INFO: `info.rs`). Redis's own
//! would act on every tenant; tenantry walks the tenant's namespace with SCAN
//! instead (UNLINK in batches of `cleanup.batch`, so the backend is never
//! blocked for long). Commands after a FLUSHDB on the same connection wait
//! until it is done, so they see the tenant's keyspace empty, as in Redis.
//!
//! Inside MULTI, FLUSHDB and DBSIZE must run in the backend's transaction,
//! where nothing can be awaited: on a backend of one node they are queued as
//! a script that walks the namespace with SCAN itself (atomic, as Redis's
//! own; like a FLUSHDB SYNC it holds the node for the whole walk). A
//! tenant whose keys live on several nodes has no one transaction to put
//! them in: refused, and the transaction is doomed.
//!
//! While the config migrates the tenant, FLUSHDB and FLUSHALL are refused:
//! the keys already copied to the target would come back at the cut-over.

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
        let migrating = self.state.tenant.as_ref()?.migration.is_some();
        if cmd == ConnCommand::Flush && migrating {
            // Its copies on the target would outlive it: the target's keys
            // would come back at the cut-over.
            self.refuse("ERR FLUSHDB and FLUSHALL are refused while the tenant is being migrated");
            return Some(After::Continue);
        }
        if self.tx.is_some() {
            self.queue_keyspace_command(cmd, req);
            return Some(After::Continue);
        }
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
                if !flush_args_ok(req) {
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

    /// FLUSHDB or DBSIZE between MULTI and EXEC (`modes.rs` lets no other
    /// keyspace command in).
    fn queue_keyspace_command(&mut self, cmd: ConnCommand, req: &Request) {
        let (Some(tenant), Some(tx)) = (self.state.tenant.clone(), self.tx.as_mut()) else { return };
        let name = String::from_utf8_lossy(&req.args[0]).to_ascii_uppercase();
        if tenant.backend.is_sharded() || tenant.backend.nodes().len() > 1 {
            return self.refuse(&format!(
                "ERR {name} inside MULTI is not supported on backend '{}': the tenant's keys live on several \
                 nodes, and a transaction runs on one",
                tenant.backend.name()
            ));
        }
        let script = match cmd {
            ConnCommand::Flush if !flush_args_ok(req) => return self.refuse("ERR syntax error"),
            ConnCommand::Flush => FLUSH_SCRIPT,
            _ => DBSIZE_SCRIPT,
        };
        let batch = self.state.runtime.load().config.cleanup.batch.clamp(1, 1000);
        let pattern = crate::cleanup::match_pattern(Some(&tenant.namespace));
        let args = vec![
            Bytes::from_static(b"EVAL"),
            Bytes::from_static(script.as_bytes()),
            Bytes::from_static(b"0"),
            Bytes::from(pattern),
            Bytes::from(batch.to_string()),
        ];
        tx.queued.push(super::batcher::Queued {
            args,
            keys: Vec::new(),
            ttl: None,
            reply: tenantry_protocol::ReplyKeys::None,
            answer: None,
        });
        self.state.client.multi.store(tx.queued.len() as i64, std::sync::atomic::Ordering::Relaxed);
        if cmd == ConnCommand::Flush {
            self.own_writes.sent();
        }
        let proto = self.state.proto;
        self.batcher.local(&mut self.replies, |out| tenantry_protocol::encode::Reply { out, proto }.simple("QUEUED"));
    }
}

/// FLUSHDB [ASYNC|SYNC]: ASYNC and SYNC both answer once the keys are gone.
fn flush_args_ok(req: &Request) -> bool {
    req.args.len() <= 2
        && req.args[1..].iter().all(|a| a.eq_ignore_ascii_case(b"ASYNC") || a.eq_ignore_ascii_case(b"SYNC"))
}

/// ARGV: the namespace's SCAN pattern, keys per page (at most 1,000, well
/// under Lua's limit on `unpack`).
const FLUSH_SCRIPT: &str = "local cursor = '0' repeat \
    local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', ARGV[2]) cursor = page[1] \
    if #page[2] > 0 then redis.call('UNLINK', unpack(page[2])) end \
    until cursor == '0' return redis.status_reply('OK')";

const DBSIZE_SCRIPT: &str = "local cursor, n = '0', 0 repeat \
    local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', ARGV[2]) cursor = page[1] \
    n = n + #page[2] until cursor == '0' return n";

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
