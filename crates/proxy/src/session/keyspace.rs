//! FLUSHDB / FLUSHALL and DBSIZE for the tenant's keys only. Redis's own
//! would act on every tenant; tenantry walks the tenant's namespace with SCAN
//! instead (UNLINK in batches of `cleanup.batch`, so the backend is never
//! blocked for long). Commands after a FLUSHDB on the same connection wait
//! until it is done, so they see the tenant's keyspace empty, as in Redis.

use super::connection::After;
use super::Session;
use crate::cleanup::{count_namespace, delete_namespace};
use bytes::Bytes;
use tenantry_protocol::{ConnCommand, Request};
use tokio::sync::oneshot;

impl Session {
    /// `None` for a command that is not FLUSHDB/FLUSHALL/DBSIZE.
    pub(super) fn keyspace_command(&mut self, cmd: ConnCommand, req: &Request) -> Option<After> {
        if !matches!(cmd, ConnCommand::Flush | ConnCommand::DbSize) {
            return None;
        }
        let tenant = self.state.tenant.clone()?;
        let batch = self.state.runtime.load().config.cleanup.batch;
        let node = tenant.backend.any_node().clone();
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
                self.waiting = Some(done_rx);
                let id = tenant.id.clone();
                tokio::spawn(async move {
                    let reply = match delete_namespace(&node, &ns, batch, None, |_| {}).await {
                        Ok(n) => {
                            tracing::info!(tenant = %id, deleted = n, "FLUSHDB");
                            Bytes::from_static(b"+OK\r\n")
                        }
                        Err(e) => Bytes::from(format!("-ERR FLUSHDB of tenant '{id}' failed: {e}\r\n")),
                    };
                    let _ = tx.send(Ok(reply));
                    let _ = done_tx.send(());
                });
            }
            _ => {
                tokio::spawn(async move {
                    let reply = match count_namespace(&node, &ns, batch).await {
                        Ok(n) => Bytes::from(format!(":{n}\r\n")),
                        Err(e) => Bytes::from(format!("-ERR DBSIZE failed: {e}\r\n")),
                    };
                    let _ = tx.send(Ok(reply));
                });
            }
        }
        self.batcher.deferred(&mut self.replies, &tenant, rx, tenantry_protocol::ReplyKeys::None);
        Some(After::Continue)
    }
}
