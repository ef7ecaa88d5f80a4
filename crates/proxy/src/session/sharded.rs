//! Commands on a backend with more than one node (a Redis Cluster, a ring):
//! where each goes, and the ones that go to several nodes at once: MGET,
//! MSET, DEL, UNLINK, EXISTS, TOUCH and PUBSUB SHARDNUMSUB split by slot;
//! KEYS, PUBSUB SHARDCHANNELS, SCRIPT LOAD and SCRIPT EXISTS on every node;
//! SCAN one node after another behind one cursor. Split commands answer as
//! one Redis would; other commands whose keys span slots get Redis
//! Cluster's `CROSSSLOT`, and so does a transaction's second slot. The
//! masters a client writes to are remembered for its next WAIT.

use super::Session;
use crate::backend::{follow_redirects, Batch, BatchReply, Follow, NodePool, Place};
use crate::error::{Error, Kind};
use crate::telemetry::ErrorKind;
use crate::tenant::TenantRt;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tenantry_config::ReadFrom;
use tenantry_protocol::command::{flags, Combine, CommandSpec, Profile, Spread};
use tenantry_protocol::merge::{merge, split_scan_cursor, Merge, MAX_SCAN_NODES};
use tenantry_protocol::ttl::TtlRewrite;
use tenantry_protocol::{encode, Namespace};
use tokio::sync::oneshot;

/// Redis Cluster's words, after `CROSSSLOT`.
const CROSSSLOT: &str = "Keys in request don't hash to the same slot";

pub(super) fn crossslot() -> Error {
    Error::new(Kind::CrossSlot, CROSSSLOT)
}

/// Where a command goes.
pub(super) enum Route {
    Node(Arc<NodePool>),
    /// Split by place: each place's keys (argument indexes).
    Split(Vec<(Option<Place>, Vec<usize>)>, Combine),
    /// KEYS, SCRIPT LOAD, ...: every node.
    Every(Combine),
    /// SCAN: the node the cursor names.
    Scan,
}

impl Session {
    /// Where a command with these keys goes; an error reply when it cannot.
    pub(super) fn route(&self, tenant: &TenantRt, cmd: &Command<'_>) -> Result<Route, Error> {
        let Command { spec, profile, args, keys, .. } = *cmd;
        let backend = &tenant.backend;
        // Reads may go to a replica, by the tenant's choice; never inside
        // MULTI, whose commands all run on the master of its EXEC.
        let read = || {
            (tenant.config.read_from != ReadFrom::Never && self.tx.is_none() && spec.has_flag(flags::READONLY))
                .then_some((tenant.config.read_from, self.batcher.client))
        };
        if !backend.is_sharded() {
            return Ok(backend.node_at(None, read()).map(Route::Node)?);
        }
        let split = match profile.spread {
            Spread::Every(how) => return Ok(Route::Every(how)),
            Spread::Scan => return Ok(Route::Scan),
            // Where tenantry's subscriber connections are: a cluster passes
            // every PUBLISH to every node, but counts receivers on its own.
            Spread::AnyNode => return Ok(Route::Node(backend.any_node())),
            Spread::Split(how) => Some(how),
            Spread::ByKeys => None,
        };
        match (backend.placement(&tenant.namespace, args, keys), split) {
            (Ok(place), _) => Ok(backend.node_at(place, read()).map(Route::Node)?),
            (Err(_), Some(how)) => Ok(Route::Split(backend.places(&tenant.namespace, args, keys), how)),
            (Err(_), None) => Err(crossslot()),
        }
    }

    /// The node a checked command goes to, or `None` when it has been
    /// answered here: refused (CROSSSLOT, no replica), or split over several
    /// nodes. Inside MULTI, the transaction's slot is checked and recorded.
    pub(super) fn place(
        &mut self,
        tenant: &Arc<TenantRt>,
        cmd: Command<'_>,
        blocking: bool,
        bytes: usize,
    ) -> Option<Arc<NodePool>> {
        let metrics = &tenant.metrics;
        let spec = cmd.spec;
        let route = match self.route(tenant, &cmd) {
            Ok(route) => route,
            Err(e) => {
                metrics.error(e.kind().into(), 1);
                if let Some(tx) = &mut self.tx {
                    tx.dirty = true;
                }
                self.refuse(&e.resp());
                return None;
            }
        };
        let node = match route {
            Route::Node(node) => node,
            _ if self.tx.is_some() || blocking => {
                metrics.error(ErrorKind::CrossSlot, 1);
                if let Some(tx) = &mut self.tx {
                    tx.dirty = true;
                }
                let what = if blocking { "a blocking command" } else { "a transaction" };
                self.refuse(&Error::new(Kind::CrossSlot, format!("{CROSSSLOT} ({what} runs on one node)")).resp());
                return None;
            }
            route => {
                metrics.bytes_in.inc_by(bytes as u64);
                self.forward_parts(tenant, cmd, route);
                return None;
            }
        };
        if !tenant.backend.is_sharded() {
            return Some(node);
        }
        if let Some(tx) = &mut self.tx {
            let place = tenant.backend.placement(&tenant.namespace, cmd.args, cmd.keys).ok().flatten();
            match (tx.place, place) {
                (Some(a), Some(b)) if a != b => {
                    tx.dirty = true;
                    metrics.error(ErrorKind::CrossSlot, 1);
                    self.refuse(&crossslot().resp());
                    return None;
                }
                (None, Some(_)) => tx.place = place,
                _ => {}
            }
        } else if spec.has_flag(flags::WRITE) && !self.wrote_to.iter().any(|n| Arc::ptr_eq(n, &node)) {
            self.wrote_to.push(node.clone());
        }
        Some(node)
    }

    /// Sends a command to several nodes and queues its merged reply.
    pub(super) fn forward_parts(&mut self, tenant: &Arc<TenantRt>, cmd: Command<'_>, route: Route) {
        let Command { spec, profile, args, keys, ttl } = cmd;
        let backend = &tenant.backend;
        let (parts, how) = match route {
            Route::Node(_) => unreachable!("one node is forwarded as usual"),
            Route::Split(places, how) => split(how, args, keys, &places, backend),
            Route::Every(how) => {
                let nodes = backend.nodes();
                let parts = nodes.into_iter().map(|n| Part { node: n, args: args.to_vec(), keys: keys.to_vec() });
                (Ok(parts.collect()), Merge::from(how))
            }
            Route::Scan => scan(args, keys, backend),
        };
        let parts = match parts {
            Ok(parts) => parts,
            Err(e) => return self.refuse(&e.resp()),
        };
        if spec.has_flag(flags::DENYOOM) && tenant.config.memory.is_some() {
            for part in &parts {
                tenant.quota.add_on(part.node.addr(), crate::tenant::write_cost(&part.args, &part.keys));
            }
        }
        if spec.has_flag(flags::WRITE) {
            for part in &parts {
                if !self.wrote_to.iter().any(|n| Arc::ptr_eq(n, &part.node)) {
                    self.wrote_to.push(part.node.clone());
                }
            }
        }
        // Earlier commands go first on each node's connection.
        self.batcher.flush(&mut self.replies);
        // One batch per node, with the parts (one per slot) that go there.
        let ns = &tenant.namespace;
        let proto = self.state.proto;
        let n_parts = parts.len();
        let batches = node_batches(parts, args, ttl, ns);
        let mut sent = Vec::with_capacity(batches.len());
        for b in batches {
            let bytes = b.bytes.freeze();
            let follow = backend.cluster().map(|c| Follow {
                cluster: c.clone(),
                client: self.batcher.client,
                proto,
                request: bytes.clone(),
                transaction: false,
            });
            let (tx, rx) = oneshot::channel();
            b.node.send(self.batcher.client, proto, Batch::new(bytes, b.count, tx));
            sent.push((b.node, b.layout, follow, rx));
        }
        let (tx, rx) = oneshot::channel();
        // A migrating tenant's write is marked once every part is answered.
        let mark = self.write_mark.take();
        tokio::spawn(async move {
            let reply = gather(sent, how, n_parts).await;
            if let Some(mark) = &mark {
                crate::migrate::mark_now(mark).await;
            }
            drop(mark);
            let _ = tx.send(reply);
        });
        self.batcher.deferred(&mut self.replies, tenant, rx, profile.reply);
    }
}

/// The parts grouped into one batch per node, each part followed by the
/// PEXPIREs of its keys' default TTLs.
fn node_batches(parts: Vec<Part>, args: &[Bytes], ttl: Option<&TtlRewrite>, ns: &Namespace) -> Vec<NodeBatch> {
    let mut batches: Vec<NodeBatch> = Vec::new();
    for (index, part) in parts.into_iter().enumerate() {
        let b = match batches.iter().position(|b| Arc::ptr_eq(&b.node, &part.node)) {
            Some(b) => &mut batches[b],
            None => {
                batches.push(NodeBatch {
                    node: part.node.clone(),
                    bytes: BytesMut::new(),
                    count: 0,
                    layout: Vec::new(),
                });
                batches.last_mut().expect("pushed")
            }
        };
        encode::command(&mut b.bytes, &part.args, &part.keys, ns);
        let mut frames = 1;
        for (i, ms) in ttl.map(|rw| rw.default_for.as_slice()).unwrap_or_default() {
            if let Some(k) = part.keys.iter().find(|&&k| part.args[k] == args[*i]) {
                let ms = ms.to_string();
                encode::command(&mut b.bytes, &[&b"PEXPIRE"[..], &part.args[*k], ms.as_bytes(), b"NX"], &[1], ns);
                frames += 1;
            }
        }
        b.count += frames;
        b.layout.push((index, frames));
    }
    batches
}

/// Each node's replies split back into the parts', merged into one reply.
async fn gather(sent: Vec<Sent>, how: Merge, n_parts: usize) -> BatchReply {
    let invalid = Bytes::from_static(b"-ERR invalid reply from a node\r\n");
    let mut replies = vec![invalid.clone(); n_parts];
    for (node, layout, follow, rx) in sent {
        let reply = match rx.await {
            Ok(Ok(bytes)) => match follow {
                Some(f) if tenantry_protocol::cluster::may_hold_redirect(&bytes) => follow_redirects(f, bytes).await,
                _ => Ok(bytes),
            },
            Ok(Err(e)) => Err(e),
            Err(_) => Err(node.lost()),
        };
        let bytes = reply?;
        // Each part's own reply; its default TTLs' are dropped.
        let frames = tenantry_protocol::reply::split_frames(&bytes).unwrap_or_default();
        let mut at = 0;
        for (part, n) in layout {
            if let Some(frame) = frames.get(at) {
                replies[part] = frame.clone();
            }
            at += n;
        }
    }
    Ok(merge(&how, &replies))
}

/// A node's batch on its way: (node, layout, how to follow redirects, reply).
type Sent = (Arc<NodePool>, Vec<(usize, usize)>, Option<Follow>, oneshot::Receiver<BatchReply>);

/// The parts of a split command that go to one node, as one batch.
struct NodeBatch {
    node: Arc<NodePool>,
    bytes: BytesMut,
    count: usize,
    /// (part, frames it is answered with: its own and its default TTLs').
    layout: Vec<(usize, usize)>,
}

/// A command to place on a node, or to send to several.
#[derive(Clone, Copy)]
pub(super) struct Command<'a> {
    pub spec: &'static CommandSpec,
    pub profile: &'static Profile,
    pub args: &'a [Bytes],
    pub keys: &'a [usize],
    /// Default TTLs of the keys it writes, set on each part's node.
    pub ttl: Option<&'a TtlRewrite>,
}

/// One slot's (or ring node's) share of a split command.
struct Part {
    node: Arc<NodePool>,
    args: Vec<Bytes>,
    /// Key positions in `args`.
    keys: Vec<usize>,
}

/// One command per place, each with its keys (and MSET's values).
fn split(
    how: Combine,
    args: &[Bytes],
    keys: &[usize],
    places: &[(Option<Place>, Vec<usize>)],
    backend: &crate::backend::Router,
) -> (Result<Vec<Part>, Error>, Merge) {
    let mut how = Merge::from(how);
    // The command (and subcommand) before its first key; then each key's
    // arguments, which run to the next key (MSET: key and value). Keys of
    // these commands come in argument order.
    let first = keys.first().copied().unwrap_or(1);
    let mut parts = Vec::with_capacity(places.len());
    let mut order = vec![(0, 0); keys.len()];
    for (p, (place, positions)) in places.iter().enumerate() {
        let node = match backend.node_at(*place, None) {
            Ok(node) => node,
            Err(e) => return (Err(e.into()), how),
        };
        let mut part = Part { node, args: args[..first].to_vec(), keys: Vec::with_capacity(positions.len()) };
        for (i, &at) in positions.iter().enumerate() {
            let k = keys[at];
            let end = keys.get(at + 1).copied().filter(|&e| e > k).unwrap_or(args.len());
            part.keys.push(part.args.len());
            part.args.extend_from_slice(&args[k..end]);
            order[at] = (p, i);
        }
        parts.push(part);
    }
    if let Merge::Arrays { order: o } | Merge::Pairs { order: o } = &mut how {
        *o = order;
    }
    (Ok(parts), how)
}

/// SCAN on the node the client's cursor names, from that node's cursor.
fn scan(args: &[Bytes], keys: &[usize], backend: &crate::backend::Router) -> (Result<Vec<Part>, Error>, Merge) {
    let nodes = backend.nodes();
    let cursor = std::str::from_utf8(&args[1]).ok().and_then(|c| c.parse::<u64>().ok());
    let Some(cursor) = cursor else {
        return (Err(Error::new(Kind::Invalid, "invalid cursor")), Merge::Concat);
    };
    let (node, own) = split_scan_cursor(cursor);
    if node >= nodes.len() || nodes.len() > MAX_SCAN_NODES {
        return (Err(Error::new(Kind::Invalid, "invalid cursor")), Merge::Concat);
    }
    let mut part_args = args.to_vec();
    part_args[1] = Bytes::from(own.to_string());
    let part = Part { node: nodes[node].clone(), args: part_args, keys: keys.to_vec() };
    (Ok(vec![part]), Merge::Scan { node, nodes: nodes.len() })
}
