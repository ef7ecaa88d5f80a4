//! The multiplexed connections to one Redis node, shared by every client.

use super::conn::{spawn_connection, BackendError, Batch, ConnHandle, ConnSettings};
use std::sync::{Arc, OnceLock};
use tenantry_config::{Backend, BackendAddr, BackendName};
use tenantry_protocol::Protocol;

/// Connections to one node, in two sets: replies differ between RESP2 and
/// RESP3, so a client's commands go over connections speaking its protocol.
/// The RESP3 set is opened the first time a RESP3 client needs it.
#[derive(Debug)]
pub struct NodePool {
    settings: Arc<ConnSettings>,
    count: usize,
    resp2: Vec<ConnHandle>,
    resp3: OnceLock<Vec<ConnHandle>>,
}

impl NodePool {
    pub fn new(backend: &Backend, addr: &BackendAddr) -> Self {
        let settings = Arc::new(ConnSettings::new(backend, addr));
        let resp2 = (0..backend.connections).map(|_| spawn_connection(settings.clone(), Protocol::Resp2)).collect();
        NodePool { settings, count: backend.connections, resp2, resp3: OnceLock::new() }
    }

    pub fn backend_name(&self) -> &BackendName {
        &self.settings.backend
    }

    pub fn addr(&self) -> &BackendAddr {
        &self.settings.addr
    }

    /// The version the node reported in its HELLO reply, once connected.
    pub fn server_version(&self) -> Option<String> {
        self.settings.version.get().cloned()
    }

    /// The error for requests whose connection broke before their replies came.
    pub fn lost(&self) -> BackendError {
        BackendError::Lost { backend: self.settings.backend.clone(), addr: self.settings.addr.clone() }
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
