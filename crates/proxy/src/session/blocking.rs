//! Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN,
//! BZPOPMAX, BZMPOP, XREAD/XREADGROUP with BLOCK). A blocked command would
//! stall every client sharing its backend connection, so each runs on a
//! connection of its own, opened for it; the client's later commands wait
//! for its reply, as they would in Redis. If the client goes away, the task
//! is aborted and its connection closed, which unblocks it on the backend.

use super::Session;
use crate::error::{Error, Kind};
use crate::tenant::TenantRt;
use bytes::{Buf, Bytes, BytesMut};
use std::sync::Arc;
use tenantry_protocol::reply::ReplyScanner;
use tenantry_protocol::{encode, ReplyKeys, Request};
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

/// Which replies of commands sent on connections of one's own make the
/// client's: `count` commands each, the reply of command `keep`, stripped by
/// `strip`; `timed_out`: what a blocking command answers when given up.
struct Take {
    count: usize,
    keep: usize,
    strip: ReplyKeys,
    timed_out: Option<&'static [u8]>,
}

/// A command running on connections of the client's own: aborted (its
/// connections closed) when dropped; a blocking one can be given up.
pub struct OwnCommand {
    _task: AbortOnDrop,
    give_up: Option<oneshot::Sender<()>>,
}

impl OwnCommand {
    /// Draining: a blocking command answers what its timeout would, now.
    pub fn give_up(&mut self) {
        if let Some(give_up) = self.give_up.take() {
            let _ = give_up.send(());
        }
    }
}

/// Aborts a task when dropped.
pub struct AbortOnDrop(pub tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Session {
    /// `default_ttls`: (argument index, ms) of written keys to give the
    /// tenant's default TTL if they have none, as for other writes.
    pub(super) fn blocking(
        &mut self,
        tenant: &Arc<TenantRt>,
        node: Arc<crate::backend::NodePool>,
        req: &Request,
        strip: ReplyKeys,
        default_ttls: &[(usize, u64)],
        timed_out: &'static [u8],
    ) {
        let mut bytes = BytesMut::new();
        encode::command(&mut bytes, &req.args, &self.keys, &tenant.namespace);
        for (i, ms) in default_ttls {
            let ms = ms.to_string();
            let key: &[u8] = &req.args[*i];
            encode::command(&mut bytes, &[&b"PEXPIRE"[..], key, ms.as_bytes(), b"NX"], &[1], &tenant.namespace);
        }
        // The blocking command's reply, then the hidden PEXPIREs' (dropped).
        let take = Take { count: 1 + default_ttls.len(), keep: 0, strip, timed_out: Some(timed_out) };
        self.on_own_connections(tenant, vec![node], bytes.freeze(), take, |mut r| r.remove(0));
    }

    /// Sends `bytes` (`count` commands) on a connection of the client's own
    /// on each of `nodes` and passes on the reply of command `keep` of each,
    /// merged by `merge` into the client's one reply (in `nodes` order): the
    /// client's later commands wait for it, and if the client goes away the
    /// task is aborted, closing the connections (which releases a blocked
    /// command). Given up (`OwnCommand::give_up`), it answers `timed_out`
    /// and its connections close, which releases it on the backend.
    fn on_own_connections(
        &mut self,
        tenant: &Arc<TenantRt>,
        nodes: Vec<Arc<crate::backend::NodePool>>,
        bytes: Bytes,
        Take { count, keep, strip, timed_out }: Take,
        merge: impl FnOnce(Vec<Bytes>) -> Bytes + Send + 'static,
    ) {
        let proto = self.state.proto;
        let (tx, rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let client = self.state.client.clone();
        let (give_up, given_up) = match timed_out {
            Some(_) => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        // A migrating tenant's write, marked once answered (or given up).
        let mark = self.write_mark.take();
        let task = tokio::spawn(async move {
            // INFO's blocked_clients counts it from here (tests wait on that).
            client.blocked.store(true, std::sync::atomic::Ordering::Relaxed);
            let mut running = tokio::task::JoinSet::new();
            for (i, node) in nodes.iter().enumerate() {
                let (node, bytes) = (node.clone(), bytes.clone());
                running.spawn(async move { (i, own_connection(&node, proto, &bytes, count, keep).await) });
            }
            let work = async {
                let mut replies = vec![Bytes::new(); nodes.len()];
                let mut result = Ok(());
                while let Some(Ok((i, reply))) = running.join_next().await {
                    match reply {
                        Ok(r) => replies[i] = r,
                        Err(e) => result = Err(nodes[i].unavailable(e)),
                    }
                }
                result.map(|()| merge(replies))
            };
            let result = match (given_up, timed_out) {
                (Some(given_up), Some(timed_out)) => {
                    let (unblock, unblocked) = oneshot::channel();
                    *client.unblocker.lock().expect("not poisoned") = Some(unblock);
                    tokio::select! {
                        r = work => r,
                        // (`running` is dropped as the task ends: its connections close.)
                        Ok(()) = given_up => Ok(Bytes::from_static(timed_out)),
                        Ok(with_error) = unblocked => Ok(match with_error {
                            true => Bytes::from_static(b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"),
                            false => Bytes::from_static(timed_out),
                        }),
                    }
                }
                _ => work.await,
            };
            client.unblocker.lock().expect("not poisoned").take();
            client.blocked.store(false, std::sync::atomic::Ordering::Relaxed);
            if let Some(mark) = &mark {
                crate::migrate::mark_now(mark).await;
            }
            drop(mark);
            let _ = tx.send(result);
            let _ = done_tx.send(());
        });
        let own = OwnCommand { _task: AbortOnDrop(task.abort_handle()), give_up };
        self.waiting = Some(super::Waiting { done: done_rx, blocked: Some(own) });
        self.batcher.deferred(&mut self.replies, tenant, rx, strip);
    }
}

/// Runs `count` commands on a connection of one's own to `node` and returns
/// the reply of command `keep`; the connection is kept for reuse if clean.
async fn own_connection(
    node: &crate::backend::NodePool,
    proto: tenantry_protocol::Protocol,
    bytes: &[u8],
    count: usize,
    keep: usize,
) -> Result<Bytes, Error> {
    let mut conn = node.dedicated(proto).await?;
    conn.send_all(bytes).await.map_err(Error::io)?;
    let mut buf = BytesMut::with_capacity(4096);
    let mut scanner = ReplyScanner::new();
    let (mut kept, mut seen) = (None, 0);
    loop {
        if conn.read_buf(&mut buf).await.map_err(Error::io)? == 0 {
            return Err(Error::new(Kind::Backend, "connection closed by the backend"));
        }
        while let Some(len) = scanner.scan(&buf).map_err(Error::bad_reply)? {
            if buf[0] == b'>' {
                buf.advance(len); // an out-of-band push: not a reply
                continue;
            }
            let frame = buf.split_to(len).freeze();
            if seen == keep {
                kept = Some(frame);
            }
            seen += 1;
            if seen == count {
                if buf.is_empty() {
                    // Answered and nothing else pending: clean for the next one.
                    node.give_back(proto, conn);
                }
                return kept.ok_or_else(|| Error::new(Kind::BadReply, "no reply"));
            }
        }
    }
}

impl Session {
    /// For commands served on other connections than the client's batches
    /// (WAIT, FLUSHDB, DBSIZE, RANDOMKEY, INFO keyspace, FUNCTION): they must
    /// see the client's earlier commands done. If some are still in flight,
    /// the request is retried shortly (the client is not read meanwhile) and
    /// this returns true.
    pub(super) fn after_earlier_replies(&mut self, req: &Request) -> bool {
        if self.replies.in_flight == 0 && self.batcher.pending() == 0 {
            return false;
        }
        self.retry_soon(req);
        true
    }

    /// Runs `req` again in a millisecond, the client not read meanwhile:
    /// for a request waiting on something the session is told of later.
    pub(super) fn retry_soon(&mut self, req: &Request) {
        let now = tokio::time::Instant::now();
        self.delayed = Some(Box::new(super::Delayed {
            req: req.clone(),
            retry_at: now + std::time::Duration::from_millis(1),
            deadline: now + std::time::Duration::from_secs(86_400),
            muted: self.replies.muting,
        }));
    }

    /// WAIT numreplicas timeout. A client's writes go over shared connections,
    /// so WAIT cannot run where they ran without stalling other clients.
    /// Instead: once every earlier command of the client is answered (its
    /// writes are in the node's replication stream), a connection of its own
    /// makes one write of its own (a PUBLISH, which replicates) and WAITs:
    /// the replicas it counts have acknowledged everything up to that point,
    /// the client's writes included.
    pub(super) fn wait_replicas(&mut self, tenant: &Arc<TenantRt>, req: Request) {
        if self.after_earlier_replies(&req) {
            return;
        }
        let mut bytes = BytesMut::new();
        let none = tenantry_protocol::Namespace::new("-").expect("valid");
        encode::command(&mut bytes, &[&b"PUBLISH"[..], b"tenantry:wait", b""], &[], &none);
        encode::command(&mut bytes, &req.args, &[], &none);
        // On a cluster, every master the client wrote to since its last
        // WAIT; the answer is the fewest replicas any of them reached.
        let mut nodes = std::mem::take(&mut self.wrote_to);
        if nodes.is_empty() {
            nodes.push(tenant.backend.any_node());
        }
        // The PUBLISH's reply is dropped, WAIT's passed on.
        let take = Take { count: 2, keep: 1, strip: ReplyKeys::None, timed_out: None };
        self.on_own_connections(tenant, nodes, bytes.freeze(), take, |replies| {
            // An error (no integer) sorts first: it is passed on.
            let fewest = replies.iter().min_by_key(|r| tenantry_protocol::answer::integer(r).ok());
            fewest.cloned().unwrap_or_default()
        });
    }
}
