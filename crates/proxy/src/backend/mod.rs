//! Backends: where a tenant's commands go.
//!
//! A [`Router`] picks the node for each command. Standalone backends have one
//! node; Redis Cluster (slot routing, split multi-key commands) will be another
//! variant of the same enum, so sessions never care which kind they talk to.

mod conn;
mod pool;

pub use conn::{BackendError, Batch, BatchReply, ConnHandle};
pub use pool::NodePool;

use bytes::Bytes;
use std::sync::Arc;
use tenantry_config::{Backend, BackendKind, BackendName};

/// Routes commands of one backend to its nodes.
#[derive(Debug)]
pub enum Router {
    Standalone(Arc<NodePool>),
}

impl Router {
    pub fn new(backend: &Backend) -> Self {
        match backend.kind {
            BackendKind::Standalone => Router::Standalone(Arc::new(NodePool::new(backend, &backend.nodes[0]))),
        }
    }

    pub fn name(&self) -> &BackendName {
        match self {
            Router::Standalone(pool) => pool.backend_name(),
        }
    }

    /// The node that serves a command, given its arguments and the positions
    /// of its keys (prefixed on the wire). A standalone backend has one node;
    /// Redis Cluster will route by the slot of the keys here.
    pub fn route(&self, _args: &[Bytes], _keys: &[usize]) -> &Arc<NodePool> {
        match self {
            Router::Standalone(pool) => pool,
        }
    }

    /// A node that speaks for the backend (its server version, for HELLO).
    pub fn any_node(&self) -> &Arc<NodePool> {
        match self {
            Router::Standalone(pool) => pool,
        }
    }

    /// True when every node has a live connection.
    pub fn is_up(&self) -> bool {
        match self {
            Router::Standalone(pool) => pool.is_up(),
        }
    }
}
