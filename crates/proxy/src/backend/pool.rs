//! The multiplexed connections to one Redis node, shared by every client.

use super::conn::{
    connect, spawn_connection, BackendError, BackendTlsSetup, Batch, BatchReply, ConnError, ConnHandle, ConnSettings,
};
use crate::stream::Stream;
use bytes::{Bytes, BytesMut};
use std::sync::{Arc, Mutex, OnceLock};
use tenantry_config::{Backend, BackendAddr, BackendName};
use tenantry_protocol::Protocol;
use tenantry_protocol::{encode, Namespace};
use tokio::sync::oneshot;

/// Which node a batch went to: enough to name it in an error, without its
/// connections.
#[derive(Debug)]
pub struct NodeId {
    pub backend: BackendName,
    pub addr: BackendAddr,
}

impl NodeId {
    /// The error for a batch whose connection broke before its replies.
    pub fn lost(&self) -> BackendError {
        BackendError::Lost { backend: self.backend.clone(), addr: self.addr.clone() }
    }
}

/// Connections to one node, in two sets: replies differ between RESP2 and
/// RESP3, so a client's commands go over connections speaking its protocol.
/// The RESP3 set is opened the first time a RESP3 client needs it.
#[derive(Debug)]
pub struct NodePool {
    settings: Arc<ConnSettings>,
    id: Arc<NodeId>,
    count: usize,
    resp2: Vec<ConnHandle>,
    resp3: OnceLock<Vec<ConnHandle>>,
    /// Connections of their own (blocking commands), idle and ready: a
    /// worker looping on BRPOP reuses one instead of connecting each time,
    /// and its command reaches the node without a connect's delay.
    idle: Mutex<Vec<(Protocol, Stream)>>,
    /// A Redis Cluster node: commands with several keys need them in one slot.
    in_cluster: bool,
    /// A cluster master's hash tag for tenantry's own keys on it (leases,
    /// quota figures): one whose slot the node serves, set with each map.
    local_tag: Mutex<Option<Arc<str>>>,
}

/// Idle connections kept per node, beyond which returned ones are closed.
const MAX_IDLE: usize = 32;

impl NodePool {
    pub fn new(backend: &Backend, addr: &BackendAddr, tls: BackendTlsSetup) -> Self {
        Self::for_node(backend, addr, false, tls)
    }

    /// The name of one of tenantry's own keys on this node: as given on a
    /// standalone node; on a cluster master, with a hash tag that lands it in
    /// one of the node's own slots (so every proxy names the same key, and the
    /// node serves it).
    pub fn local_key(&self, base: &[u8]) -> Vec<u8> {
        let mut key = base.to_vec();
        if let Some(tag) = self.local_tag.lock().expect("not poisoned").as_ref() {
            key.push(b'{');
            key.extend_from_slice(tag.as_bytes());
            key.push(b'}');
        }
        key
    }

    pub(super) fn set_local_tag(&self, tag: Option<Arc<str>>) {
        *self.local_tag.lock().expect("not poisoned") = tag;
    }

    /// The keys in groups one multi-key command may take: all together on
    /// a standalone node, one group per slot on a cluster node.
    pub fn key_groups<'a>(&self, keys: &'a [Bytes]) -> Vec<Vec<&'a Bytes>> {
        if !self.in_cluster {
            return vec![keys.iter().collect()];
        }
        let mut groups: std::collections::BTreeMap<u16, Vec<&Bytes>> = Default::default();
        for k in keys {
            groups.entry(redis_protocol::redis_keyslot(k)).or_default().push(k);
        }
        groups.into_values().collect()
    }

    /// `readonly`: a cluster replica serving reads (`READONLY` on each connection).
    pub fn for_node(backend: &Backend, addr: &BackendAddr, readonly: bool, tls: BackendTlsSetup) -> Self {
        let mut settings = ConnSettings::new(backend, addr, tls);
        settings.readonly = readonly;
        Self::with_settings(backend, settings)
    }

    pub(super) fn with_settings(backend: &Backend, settings: ConnSettings) -> Self {
        let settings = Arc::new(settings);
        let resp2 = (0..backend.connections).map(|_| spawn_connection(settings.clone(), Protocol::Resp2)).collect();
        let in_cluster = matches!(backend.kind, tenantry_config::BackendKind::Cluster { .. });
        let id = Arc::new(NodeId { backend: settings.backend.clone(), addr: settings.addr.clone() });
        NodePool {
            settings,
            id,
            count: backend.connections,
            resp2,
            resp3: OnceLock::new(),
            idle: Mutex::default(),
            in_cluster,
            local_tag: Mutex::default(),
        }
    }

    pub fn backend_name(&self) -> &BackendName {
        &self.settings.backend
    }

    /// The backend's id of a connection to this node that never subscribes
    /// (RESP2, tenantry's own): a REDIRECT there delivers nothing.
    pub fn quiet_id(&self) -> Option<u64> {
        Some(self.settings.quiet_id.load(std::sync::atomic::Ordering::Relaxed)).filter(|&id| id != 0)
    }

    pub fn addr(&self) -> &BackendAddr {
        &self.settings.addr
    }

    /// The version the node reported in its HELLO reply, once connected.
    pub fn server_version(&self) -> Option<String> {
        self.settings.version.get().cloned()
    }

    /// Sends one command of tenantry's own (its arguments as given, nothing
    /// prefixed) and waits for its reply.
    pub async fn call(&self, args: &[&[u8]]) -> BatchReply {
        self.call_in(Protocol::Resp2, args).await
    }

    /// `call`, answered in `proto` (for replies passed on to a client).
    pub async fn call_in(&self, proto: Protocol, args: &[&[u8]]) -> BatchReply {
        let mut bytes = BytesMut::new();
        encode::command(&mut bytes, args, &[], &Namespace::new("-").expect("valid"));
        let (tx, rx) = oneshot::channel();
        self.send(0, proto, Batch::new(bytes.freeze(), 1, tx));
        match rx.await {
            Ok(reply) => reply,
            Err(_) => Err(self.lost()),
        }
    }

    /// A new connection of its own to this node (for a subscriber, or a
    /// blocking command), speaking `proto`.
    /// A multiplexed-style connection for one client alone, never reconnected.
    pub(crate) fn pinned(&self, proto: Protocol, pushes: tokio::sync::mpsc::Sender<Bytes>) -> super::conn::ConnHandle {
        super::conn::spawn_pinned(self.settings.clone(), proto, pushes)
    }

    /// Fails with why (the caller says which node: `unavailable`).
    pub(crate) async fn dedicated(&self, proto: Protocol) -> Result<Stream, ConnError> {
        loop {
            let found = {
                let mut idle = self.idle.lock().expect("not poisoned");
                idle.iter().rposition(|(p, _)| *p == proto).map(|i| idle.swap_remove(i).1)
            };
            let Some(conn) = found else { break };
            // One the node closed meanwhile (a restart, its `timeout`) reads
            // EOF; an idle one has nothing to read (anything, even a TLS
            // record, and it is not reused).
            let mut probe = [0u8; 1];
            if matches!(conn.tcp().try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
                return Ok(conn);
            }
        }
        connect(&self.settings, proto).await
    }

    /// Takes back a connection of its own whose command was fully answered.
    pub(crate) fn give_back(&self, proto: Protocol, conn: Stream) {
        let mut idle = self.idle.lock().expect("not poisoned");
        if idle.len() < MAX_IDLE {
            idle.push((proto, conn));
        }
    }

    /// The error for requests this node could not take.
    pub fn unavailable(&self, reason: impl ToString) -> BackendError {
        BackendError::Unavailable {
            backend: self.settings.backend.clone(),
            addr: self.settings.addr.clone(),
            reason: reason.to_string(),
        }
    }

    /// The error for requests whose connection broke before their replies came.
    pub fn lost(&self) -> BackendError {
        self.id.lost()
    }

    pub fn id(&self) -> &Arc<NodeId> {
        &self.id
    }

    pub fn is_up(&self) -> bool {
        self.resp2.iter().any(ConnHandle::is_up)
    }

    /// Queues a batch on the connection `client` always uses for this node and
    /// protocol: one client's batches share a connection, so the backend runs
    /// them in the order the client sent them.
    pub fn send(&self, client: u64, proto: Protocol, batch: Batch) {
        let conns = match proto {
            Protocol::Resp2 => &self.resp2,
            Protocol::Resp3 => self.resp3.get_or_init(|| {
                (0..self.count).map(|_| spawn_connection(self.settings.clone(), Protocol::Resp3)).collect()
            }),
        };
        conns[(client % conns.len() as u64) as usize].send(batch);
    }
}
