//! Pub/Sub. A subscribed client needs a backend connection of its own (the
//! backend pushes messages to the connection that subscribed), so the first
//! (un)subscription opens one, served by a task. Channel and pattern names
//! carry the tenant's namespace both ways: SUBSCRIBE `orders` subscribes to
//! `checkout:orders`, a pattern `o*` becomes `checkout:o*` (namespaces hold
//! no glob characters, so it matches only the tenant's channels), and
//! messages and confirmations come back under the client's names.
//!
//! Replies to subscription commands keep their place among the client's
//! other replies (the reply queue waits for them); messages are appended to
//! the queue as they arrive. In RESP2, a subscribed client may only
//! (un)subscribe, PING, QUIT and RESET, as in Redis.

use super::blocking::AbortOnDrop;
use super::Session;
use crate::backend::{BatchReply, NodePool};
use crate::clients::SubscriberId;
use crate::error::{Error, Kind};
use crate::tenant::TenantRt;
use bytes::{Bytes, BytesMut};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use tenantry_protocol::classify::PubSubKind;
use tenantry_protocol::command::CommandSpec;
use tenantry_protocol::events::{self, Delivery};
use tenantry_protocol::reply::ReplyScanner;
use tenantry_protocol::strip::{is_message, pubsub_kind, strip_reply};
use tenantry_protocol::{encode, Protocol, ReplyKeys, Request};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

/// Messages read from the backend but not yet taken by the session; beyond
/// this the backend connection is not read, and Redis's own
/// `client-output-buffer-limit pubsub` applies to a subscriber that cannot keep up.
const MESSAGE_BUFFER: usize = 1024;

/// Where Redis sends invalidations redirected to a connection (RESP2 tracking).
pub const INVALIDATE_CHANNEL: &[u8] = b"__redis__:invalidate";

/// A command for the subscriber connection and how many frames answer it.
struct Outgoing {
    bytes: Bytes,
    frames: usize,
    reply: oneshot::Sender<BatchReply>,
}

pub(super) struct PubSub {
    tenant: Arc<TenantRt>,
    /// The node the subscriber connection is to.
    node: Arc<NodePool>,
    commands: mpsc::UnboundedSender<Outgoing>,
    pub messages: mpsc::Receiver<Bytes>,
    _task: AbortOnDrop,
    /// What the backend will hold once it has run every command sent so
    /// far, by kind, under the client's names.
    subscribed: [HashSet<Bytes>; 3],
}

impl Drop for PubSub {
    fn drop(&mut self) {
        for pattern in &self.subscribed[index(PubSubKind::Pattern)] {
            self.tenant.patterns.remove(pattern);
        }
    }
}

fn index(kind: PubSubKind) -> usize {
    match kind {
        PubSubKind::Channel => 0,
        PubSubKind::Pattern => 1,
        PubSubKind::Shard => 2,
    }
}

impl PubSub {
    fn open(tenant: Arc<TenantRt>, node: Arc<NodePool>, proto: Protocol, backend_id: Arc<SubscriberId>) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let (tx, messages) = mpsc::channel(MESSAGE_BUFFER);
        let task = tokio::spawn(subscriber(node.clone(), proto, tenant.clone(), rx, tx, backend_id));
        PubSub {
            tenant,
            node,
            commands,
            messages,
            _task: AbortOnDrop(task.abort_handle()),
            subscribed: Default::default(),
        }
    }

    /// True while the backend holds a subscription for this client.
    pub fn active(&self) -> bool {
        self.subscribed.iter().any(|s| !s.is_empty())
    }

    /// Sends a command; its reply (`frames` frames) arrives on the returned receiver.
    fn send(&self, args: &[Bytes], keys: &[usize], frames: usize) -> oneshot::Receiver<BatchReply> {
        let mut bytes = BytesMut::new();
        encode::command(&mut bytes, args, keys, &self.tenant.namespace);
        let (reply, rx) = oneshot::channel();
        // A closed channel drops `reply`: the reply queue reports the connection lost.
        let _ = self.commands.send(Outgoing { bytes: bytes.freeze(), frames, reply });
        rx
    }

    /// Updates what is subscribed and returns how many frames answer.
    fn apply(&mut self, kind: PubSubKind, subscribe: bool, names: &[Bytes]) -> usize {
        let patterns = kind == PubSubKind::Pattern;
        let set = &mut self.subscribed[index(kind)];
        if !subscribe && names.is_empty() {
            // Unsubscribing from all: one frame each, or one (null) if none.
            let n = set.len().max(1);
            for name in set.drain() {
                if patterns {
                    self.tenant.patterns.remove(&name);
                }
            }
            return n;
        }
        for name in names {
            let changed = if subscribe { set.insert(name.clone()) } else { set.remove(name) };
            if changed && patterns {
                if subscribe {
                    self.tenant.patterns.add(name);
                } else {
                    self.tenant.patterns.remove(name);
                }
            }
        }
        names.len()
    }
}

impl Session {
    /// Closes the subscriber connection (RESET, or it broke).
    pub(super) fn drop_pubsub(&mut self) {
        self.pubsub = None;
        self.state.client.subscriber_backend_id.set(0);
        for count in &self.state.client.subscriptions {
            count.store(0, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// True if this is a RESP2 client in subscribed mode.
    pub(super) fn subscribed_resp2(&self) -> bool {
        self.state.proto == Protocol::Resp2 && self.pubsub.as_deref().is_some_and(PubSub::active)
    }

    pub(super) fn subscription(
        &mut self,
        tenant: Arc<TenantRt>,
        spec: &'static CommandSpec,
        kind: PubSubKind,
        subscribe: bool,
        req: &Request,
    ) {
        tenant.metrics.command(spec.name);
        if let Err(e) = crate::policy::check_command(&tenant.id, &tenant.config.commands, spec) {
            tenant.metrics.error(e.kind().into(), 1);
            return self.refuse(&e.resp());
        }
        if self.tx.is_some() {
            return self.refuse(&format!(
                "ERR {} inside MULTI is not supported through tenantry",
                spec.name.to_ascii_uppercase()
            ));
        }
        // A cluster passes ordinary messages to every node, so any node
        // serves SUBSCRIBE; a sharded channel is served by its slot's node
        // only, and one subscriber connection is to one node.
        let node = match (kind, tenant.backend.placement(&tenant.namespace, &req.args, &self.keys)) {
            (PubSubKind::Shard, Err(_)) => return self.refuse(&super::sharded::crossslot().resp()),
            (PubSubKind::Shard, Ok(place @ Some(_))) => match tenant.backend.node_at(place, None) {
                Ok(node) => node,
                Err(e) => return self.refuse(&Error::from(e).resp()),
            },
            _ => self.pubsub.as_ref().map_or_else(|| tenant.backend.any_node(), |p| p.node.clone()),
        };
        if let Some(p) = &self.pubsub {
            if subscribe && !Arc::ptr_eq(&p.node, &node) {
                return self.refuse(&format!(
                    "ERR this connection's subscriptions are served by {}, and this sharded channel lives on {}: \
                     subscribe to it on another connection",
                    p.node.addr(),
                    node.addr()
                ));
            }
        }
        let proto = self.state.proto;
        let backend_id = self.state.client.subscriber_backend_id.clone();
        let pubsub = self.pubsub.get_or_insert_with(|| Box::new(PubSub::open(tenant.clone(), node, proto, backend_id)));
        let frames = pubsub.apply(kind, subscribe, &req.args[1..]);
        for (count, set) in self.state.client.subscriptions.iter().zip(&pubsub.subscribed) {
            count.store(set.len(), std::sync::atomic::Ordering::Relaxed);
        }
        // Redis's invalidation channel for RESP2 client-side caching is its
        // own, not the tenant's: only invalidations redirected here arrive on it.
        // Keyspace-event channels carry the namespace after their `__:`
        // (`tenantry_protocol::events`), not in front.
        let mut args = req.args.clone();
        let mut keys = Vec::with_capacity(self.keys.len());
        for &i in &self.keys {
            match events::backend_channel(&args[i], &pubsub.tenant.namespace) {
                Some(name) => args[i] = Bytes::from(name),
                None if args[i].as_ref() != INVALIDATE_CHANNEL => keys.push(i),
                None => {}
            }
        }
        let rx = pubsub.send(&args, &keys, frames);
        let owner = pubsub.tenant.clone();
        self.take_messages();
        self.batcher.deferred(&mut self.replies, &owner, rx, ReplyKeys::None);
    }

    /// Messages the subscriber connection has passed on but the session not
    /// yet taken go out before the reply to a command sent there now: Redis
    /// sent them first. (Those it reads later come with that reply.)
    fn take_messages(&mut self) {
        while let Some(Ok(bytes)) = self.pubsub.as_mut().map(|p| p.messages.try_recv()) {
            self.pubsub_message(Some(bytes));
        }
    }

    /// PING in RESP2 subscribed mode answers `[pong, payload]`: the
    /// subscriber connection says it, in order with its other frames.
    pub(super) fn subscribed_ping(&mut self, req: &Request) {
        let Some(pubsub) = &self.pubsub else { return };
        let rx = pubsub.send(&req.args, &[], 1);
        let owner = pubsub.tenant.clone();
        self.take_messages();
        self.batcher.deferred(&mut self.replies, &owner, rx, ReplyKeys::None);
    }

    /// A message from the subscriber connection, or `None` when it is gone.
    /// Returns false if the client must be disconnected: it was subscribed,
    /// and (as when Redis itself goes away) only a new connection recovers.
    pub(super) fn pubsub_message(&mut self, message: Option<Bytes>) -> bool {
        match message {
            Some(bytes) => {
                if let Some(p) = &self.pubsub {
                    p.tenant.metrics.bytes_out.inc_by(bytes.len() as u64);
                }
                self.batcher.local(&mut self.replies, |out| out.extend_from_slice(&bytes));
                true
            }
            None => {
                let subscribed = self.pubsub.as_deref().is_some_and(PubSub::active);
                self.drop_pubsub();
                !subscribed
            }
        }
    }
}

/// A frame of the subscriber connection under the client's names; `None`
/// for a keyspace event the tenant must not see.
fn client_view(frame: &[u8], tenant: &Arc<TenantRt>) -> Option<BytesMut> {
    let mut out = BytesMut::with_capacity(frame.len());
    match events::deliver(frame, &tenant.namespace, || tenant.event_flags()) {
        Delivery::Frame(bytes) => out.extend_from_slice(&bytes),
        Delivery::Drop => return None,
        Delivery::Other => {
            if strip_reply(ReplyKeys::PubSub, frame, &tenant.namespace, &mut out).is_err() {
                out.clear();
                out.extend_from_slice(frame);
            }
        }
    }
    Some(out)
}

/// The backend's id of the subscriber connection (0 if it does not say):
/// what CLIENT TRACKING REDIRECT from another of the tenant's connections
/// names.
async fn connection_id(
    conn: &mut crate::stream::Stream,
    buf: &mut BytesMut,
    scanner: &mut ReplyScanner,
) -> Result<u64, Error> {
    conn.send_all(b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n").await.map_err(Error::io)?;
    loop {
        if conn.read_buf(buf).await.map_err(Error::io)? == 0 {
            return Err(Error::new(Kind::Backend, "connection closed by the backend"));
        }
        if let Some(len) = scanner.scan(buf).map_err(Error::bad_reply)? {
            let reply = buf.split_to(len);
            return Ok(tenantry_protocol::answer::integer(&reply).map_or(0, |id| id as u64));
        }
    }
}

/// Serves the subscriber connection: writes commands, reads frames, strips
/// the namespace, and sends each frame where it belongs.
async fn subscriber(
    node: Arc<NodePool>,
    proto: Protocol,
    tenant: Arc<TenantRt>,
    mut commands: mpsc::UnboundedReceiver<Outgoing>,
    messages: mpsc::Sender<Bytes>,
    backend_id: Arc<SubscriberId>,
) {
    let mut pending: VecDeque<(Outgoing, BytesMut)> = VecDeque::new();
    // The tenant's keyspace-event flags, set through any of its proxies,
    // read before its first event comes.
    tenant.event_flags();
    let result: Result<(), Error> = async {
        let mut conn = node.dedicated(proto).await?;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut scanner = ReplyScanner::new();
        backend_id.set(connection_id(&mut conn, &mut buf, &mut scanner).await?);
        loop {
            tokio::select! {
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { return Ok(()) };
                    conn.send_all(&cmd.bytes).await.map_err(Error::io)?;
                    pending.push_back((cmd, BytesMut::new()));
                }
                read = conn.read_buf(&mut buf) => {
                    if read.map_err(Error::io)? == 0 {
                        return Err(Error::new(Kind::Backend, "connection closed by the backend"));
                    }
                    // Commands the session sent already have their replies
                    // waiting in its queue: a message read now goes out
                    // with the first of them, ahead of it (as from Redis),
                    // not after it through the message channel.
                    while let Ok(cmd) = commands.try_recv() {
                        conn.send_all(&cmd.bytes).await.map_err(Error::io)?;
                        pending.push_back((cmd, BytesMut::new()));
                    }
                    while let Some(len) = scanner.scan(&buf).map_err(Error::bad_reply)? {
                        let frame = buf.split_to(len);
                        let Some(out) = client_view(&frame, &tenant) else { continue };
                        let message = pubsub_kind(&frame).is_some_and(is_message) && matches!(frame[0], b'*' | b'>');
                        if message && pending.is_empty() {
                            if messages.send(out.freeze()).await.is_err() {
                                return Ok(()); // the session is gone
                            }
                        } else if message {
                            // Sent before the reply to the command waiting: it
                            // goes out with that reply, ahead of it, as from Redis.
                            if let Some((_, acc)) = pending.front_mut() {
                                acc.extend_from_slice(&out);
                            }
                        } else if let Some((cmd, acc)) = pending.front_mut() {
                            acc.extend_from_slice(&out);
                            cmd.frames -= 1;
                            if cmd.frames == 0 {
                                let (cmd, acc) = pending.pop_front().expect("front");
                                let _ = cmd.reply.send(Ok(acc.freeze()));
                            }
                        }
                        // Anything else (a push nobody asked for) is dropped.
                    }
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        for (cmd, _) in pending.drain(..) {
            let _ = cmd.reply.send(Err(node.unavailable(&e)));
        }
        while let Ok(cmd) = commands.try_recv() {
            let _ = cmd.reply.send(Err(node.unavailable(&e)));
        }
    }
}
