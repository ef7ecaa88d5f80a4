//! Following a cluster's `MOVED` and `ASK` redirections for the replies of
//! one batch, so clients never see them: each redirected command is sent
//! again where the reply says (after `ASKING` for an `ASK`), and its reply
//! takes the redirection's place. The batch's other replies are untouched,
//! and the batch is answered whole, in order, as before.

use super::cluster::Cluster;
use super::conn::{Batch, BatchReply};
use super::pool::NodePool;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tenantry_protocol::cluster::{parse_redirect, RedirectKind};
use tenantry_protocol::reply::split_frames;
use tenantry_protocol::Protocol;
use tokio::sync::oneshot;

/// Redirections followed for one command before its last one is passed on
/// (a slot moving twice while a command chases it).
const MAX_HOPS: usize = 5;

/// What following a batch's redirections needs: the batch as it was sent.
#[derive(Debug, Clone)]
pub struct Follow {
    pub cluster: Arc<Cluster>,
    pub client: u64,
    pub proto: Protocol,
    pub request: Bytes,
    /// The batch opens with MULTI ... EXEC: it is followed as a whole.
    pub transaction: bool,
}

/// The batch's replies with every redirection followed.
pub async fn follow_redirects(f: Follow, replies: Bytes) -> BatchReply {
    let (Some(commands), Some(mut replies_of)) = (split_frames(&f.request), split_frames(&replies)) else {
        return Ok(replies);
    };
    if commands.len() != replies_of.len() {
        return Ok(replies);
    }
    if f.transaction {
        return follow_transaction(f, replies).await;
    }
    for _ in 0..MAX_HOPS {
        // Per target node: the commands to send there, in batch order, and
        // whether each needs ASKING first.
        type Resend = Vec<(usize, bool)>;
        let mut targets: Vec<(Arc<NodePool>, Resend)> = Vec::new();
        for (i, reply) in replies_of.iter().enumerate() {
            let Some(r) = parse_redirect(reply) else { continue };
            let ask = r.kind == RedirectKind::Ask;
            if ask {
                f.cluster.metrics.ask.inc();
            } else {
                f.cluster.metrics.moved.inc();
                f.cluster.moved(r.slot, &r.addr);
            }
            let node = f.cluster.node(&r.addr);
            match targets.iter_mut().find(|(n, _)| Arc::ptr_eq(n, &node)) {
                Some((_, list)) => list.push((i, ask)),
                None => targets.push((node, vec![(i, ask)])),
            }
        }
        if targets.is_empty() {
            break;
        }
        let mut waiting = Vec::new();
        for (node, list) in targets {
            let mut bytes = BytesMut::new();
            let mut count = 0;
            for &(i, ask) in &list {
                if ask {
                    bytes.extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
                    count += 1;
                }
                bytes.extend_from_slice(&commands[i]);
                count += 1;
            }
            let (tx, rx) = oneshot::channel();
            node.send(f.client, f.proto, Batch::new(bytes.freeze(), count, tx));
            waiting.push((node, list, rx));
        }
        for (node, list, rx) in waiting {
            let result = match rx.await {
                Ok(r) => r,
                Err(_) => Err(node.lost()),
            };
            let got = match result {
                Ok(bytes) => split_frames(&bytes),
                Err(e) => {
                    f.cluster.refresh_soon();
                    let error = Bytes::from(format!("-ERR {e}\r\n"));
                    for &(i, _) in &list {
                        replies_of[i] = error.clone();
                    }
                    continue;
                }
            };
            let Some(mut got) = got else { continue };
            got.reverse();
            for &(i, ask) in &list {
                if ask {
                    // ASKING's own +OK.
                    got.pop();
                }
                if let Some(reply) = got.pop() {
                    replies_of[i] = reply;
                }
            }
        }
    }
    let mut out = BytesMut::with_capacity(replies_of.iter().map(Bytes::len).sum());
    for r in &replies_of {
        out.extend_from_slice(r);
    }
    Ok(out.freeze())
}

/// A transaction batch (MULTI, its commands, EXEC, hidden default TTLs)
/// whose slot moved: its commands were answered MOVED and EXEC EXECABORT, so
/// nothing ran; the whole batch runs again where MOVED says. (An ASK, a slot
/// half migrated, is left to the client as EXECABORT: a transaction cannot
/// be split between the two nodes.)
async fn follow_transaction(f: Follow, mut replies: Bytes) -> BatchReply {
    for _ in 0..MAX_HOPS {
        let Some(frames) = split_frames(&replies) else { break };
        let moved = frames.iter().filter_map(|r| parse_redirect(r)).find(|r| r.kind == RedirectKind::Moved);
        let aborted = frames.iter().any(|r| r.starts_with(b"-EXECABORT"));
        let Some(moved) = moved.filter(|_| aborted) else { break };
        f.cluster.metrics.moved.inc();
        f.cluster.moved(moved.slot, &moved.addr);
        let node = f.cluster.node(&moved.addr);
        let (tx, rx) = oneshot::channel();
        node.send(f.client, f.proto, Batch::new(f.request.clone(), frames.len(), tx));
        replies = match rx.await {
            Ok(r) => r?,
            Err(_) => return Err(node.lost()),
        };
    }
    Ok(replies)
}
