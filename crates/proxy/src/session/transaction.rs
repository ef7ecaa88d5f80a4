//! MULTI / EXEC / DISCARD / WATCH / UNWATCH. Commands between MULTI and
//! EXEC are checked (command table, tenant policy) and queued here, and
//! answered +QUEUED; EXEC sends MULTI, the commands and EXEC as one batch,
//! which is written whole on one backend connection, so no other client's
//! command can land inside the transaction.
//!
//! WATCH state lives on a backend connection, so WATCH pins the client to a
//! connection of its own: from WATCH on, all its commands go there, in
//! order. After EXEC, DISCARD, UNWATCH or RESET the watch is over; the client
//! stays pinned until every command sent there has been answered (so nothing
//! later overtakes them on another connection), then goes back to the shared
//! ones and its own connection is closed.

use super::batcher::Transaction;
use super::connection::After;
use super::Session;
use crate::error::{Error, Kind};
use tenantry_protocol::encode::Reply;
use tenantry_protocol::ConnCommand;

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

impl Session {
    /// Handles transaction commands, and connection commands inside MULTI;
    /// `None` for a connection command to handle as usual.
    pub(super) fn transaction_command(&mut self, cmd: ConnCommand) -> Option<After> {
        let after = self.transaction_command_inner(cmd);
        let queued = self.tx.as_ref().map_or(-1, |tx| tx.queued.len() as i64);
        self.state.client.multi.store(queued, std::sync::atomic::Ordering::Relaxed);
        after
    }

    fn transaction_command_inner(&mut self, cmd: ConnCommand) -> Option<After> {
        let proto = self.state.proto;
        match cmd {
            ConnCommand::Multi => {
                let tenant = self.state.tenant.clone()?;
                // A watching client's transaction runs where its keys are watched.
                let place = match self.watch {
                    Watch::Active { place } => place,
                    _ => None,
                };
                self.tx = Some(Box::new(Transaction { tenant, place, proto, queued: Vec::new(), dirty: false }));
                self.batcher.local(&mut self.replies, |out| Reply { out, proto }.simple("OK"));
            }
            ConnCommand::Exec => match self.tx.take() {
                None => self.error("ERR EXEC without MULTI"),
                Some(tx) if tx.dirty => {
                    self.unwatch();
                    self.error(EXECABORT);
                }
                Some(tx) => {
                    let answers = self.answers(&tx);
                    let mark = self.write_mark.take();
                    self.batcher.transaction(&mut self.replies, *tx, answers, mark);
                    // EXEC unwatches on the backend itself.
                    self.watch = Watch::Ending;
                }
            },
            ConnCommand::Discard => match self.tx.take() {
                None => self.error("ERR DISCARD without MULTI"),
                Some(_) => {
                    self.unwatch();
                    self.batcher.local(&mut self.replies, |out| Reply { out, proto }.simple("OK"));
                }
            },
            ConnCommand::Unwatch => {
                self.unwatch();
                self.batcher.local(&mut self.replies, |out| Reply { out, proto }.simple("OK"));
            }
            ConnCommand::Quit | ConnCommand::Reset => {
                self.tx = None;
                self.unwatch();
                return None;
            }
            // What else MULTI refuses, `modes.rs` has refused.
            _ => return None,
        }
        Some(After::Continue)
    }
}

/// The reply to a command tenantry answers itself (INFO, CONFIG GET),
/// made when awaited.
pub(super) type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = bytes::Bytes> + Send>>;

impl Session {
    /// INFO or CONFIG GET inside MULTI: the backend's transaction runs a
    /// PING in its place, whose reply inside EXEC's is replaced by tenantry's
    /// answer, made once the transaction has run (so INFO sees its writes).
    pub(super) fn queue_answer(&mut self, cmd: ConnCommand, req: &tenantry_protocol::Request) {
        let Some(tx) = self.tx.as_mut() else { return };
        tx.queued.push(super::batcher::Queued {
            args: vec![bytes::Bytes::from_static(b"PING")],
            keys: Vec::new(),
            ttl: None,
            reply: tenantry_protocol::ReplyKeys::None,
            answer: Some((cmd, req.args.clone())),
        });
        self.state.client.multi.store(tx.queued.len() as i64, std::sync::atomic::Ordering::Relaxed);
        let proto = self.state.proto;
        self.batcher.local(&mut self.replies, |out| Reply { out, proto }.simple("QUEUED"));
    }

    /// The answers of a transaction's INFO and CONFIG GET, by their place in it.
    fn answers(&self, tx: &Transaction) -> Vec<(usize, Answer)> {
        let mut answers = Vec::new();
        for (i, q) in tx.queued.iter().enumerate() {
            match &q.answer {
                Some((ConnCommand::Info, args)) => answers.push((i, self.info_answer(&tx.tenant, args))),
                Some((_, args)) => answers.push((i, self.config_get_answer(&tx.tenant, args))),
                None => {}
            }
        }
        answers
    }
}

/// EXEC's reply with the replies at `answers`' places replaced; `skip`: the
/// replies before EXEC's in `batch` (MULTI's and the QUEUED ones). `None`
/// when EXEC did not run the transaction (null or error), or the batch is
/// not as sent.
pub(super) fn splice_exec(batch: &[u8], skip: usize, answers: &[(usize, bytes::Bytes)]) -> Option<bytes::Bytes> {
    use tenantry_protocol::reply::reply_len;
    let mut pos = 0;
    for _ in 0..skip {
        pos += reply_len(batch.get(pos..)?).ok()??;
    }
    if batch.get(pos) != Some(&b'*') {
        return None;
    }
    let header = pos + batch[pos..].windows(2).position(|w| w == b"\r\n")? + 2;
    let n: usize = std::str::from_utf8(&batch[pos + 1..header - 2]).ok()?.parse().ok()?;
    let mut out = bytes::BytesMut::with_capacity(batch.len());
    out.extend_from_slice(&batch[..header]);
    let mut at = header;
    for i in 0..n {
        let len = reply_len(batch.get(at..)?).ok()??;
        match answers.iter().find(|(j, _)| *j == i) {
            Some((_, answer)) => out.extend_from_slice(answer),
            None => out.extend_from_slice(&batch[at..at + len]),
        }
        at += len;
    }
    out.extend_from_slice(&batch[at..]);
    Some(out.freeze())
}

#[cfg(test)]
mod splice_tests {
    use super::splice_exec;
    use bytes::Bytes;

    #[test]
    fn answers_take_their_places_in_execs_reply() {
        let batch = b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n+PONG\r\n$1\r\nv\r\n:1\r\n";
        let got = splice_exec(batch, 4, &[(1, Bytes::from_static(b"$4\r\ninfo\r\n"))]).unwrap();
        assert_eq!(&got[..], b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n$4\r\ninfo\r\n$1\r\nv\r\n:1\r\n");
    }

    #[test]
    fn a_transaction_that_did_not_run_is_left_as_it_is() {
        let aborted = b"+OK\r\n+QUEUED\r\n*-1\r\n";
        assert_eq!(splice_exec(aborted, 2, &[(0, Bytes::from_static(b"+x\r\n"))]), None);
        let failed = b"+OK\r\n+QUEUED\r\n-EXECABORT no\r\n";
        assert_eq!(splice_exec(failed, 2, &[(0, Bytes::from_static(b"+x\r\n"))]), None);
        assert_eq!(splice_exec(b"+OK\r\n", 2, &[]), None);
    }
}

/// Where a client is with WATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Watch {
    /// Nothing watched (pinned only if tracking).
    None,
    /// Pinned to its own connection, keys watched there; on a cluster, in
    /// the slot `place` (where its transaction must run).
    Active { place: Option<crate::backend::Place> },
    /// Still pinned until its commands there are answered; the backend may
    /// still hold watched keys (after UNWATCH, DISCARD, EXECABORT, RESET),
    /// to clear before the next WATCH.
    Stale,
    /// Still pinned until answered; nothing watched (after EXEC).
    Ending,
}

impl Session {
    /// WATCH: pins the client to its own connection first.
    pub(super) fn before_watch(
        &mut self,
        tenant: &std::sync::Arc<crate::tenant::TenantRt>,
        args: &[bytes::Bytes],
        keys: &[usize],
    ) -> Result<(), Error> {
        // On a cluster, WATCH state lives on the node of the keys' slot: all
        // watched keys must share it, as in Redis Cluster.
        let backend = &tenant.backend;
        let place = backend.placement(&tenant.namespace, args, keys).map_err(|_| super::sharded::crossslot())?;
        if backend.is_sharded() && matches!(self.watch, Watch::Active { place: watched } if watched != place) {
            return Err(super::sharded::crossslot());
        }
        let node =
            backend.node_at(place, None).map_err(|_| Error::new(Kind::NoReplica, "no node serves the watched keys"))?;
        if let Some(pinned) = &self.batcher.pinned {
            if !std::sync::Arc::ptr_eq(&pinned.node, &node) {
                return Err(Error::new(
                    Kind::Invalid,
                    "the watched keys live on another node than the client's pending commands; retry the WATCH",
                ));
            }
        }
        let proto = self.state.proto;
        self.pin(tenant, node);
        if self.watch == Watch::Stale {
            // Keys an UNWATCH (answered by tenantry) left watched on the connection.
            self.batcher.hidden(&mut self.replies, tenant, proto, &[b"UNWATCH"]);
        }
        self.watch = Watch::Active { place };
        Ok(())
    }

    /// The watch is over for the client.
    fn unwatch(&mut self) {
        if matches!(self.watch, Watch::Active { .. }) {
            self.watch = Watch::Stale;
        }
    }

    /// Back to the shared connections once nothing needs the client's own
    /// (no watch, no tracking) and nothing is owed on it.
    pub(super) fn unpin_when_idle(&mut self) {
        if self.batcher.pinned.is_some()
            && !matches!(self.watch, Watch::Active { .. })
            && self.tracking.is_none()
            && self.replies.is_empty()
            && self.batcher.pending() == 0
        {
            self.batcher.pinned = None;
            self.watch = Watch::None;
        }
    }
}
