//! Backends: where a tenant's commands go.
//!
//! A [`Router`] places each command on a node: a standalone backend has one;
//! a Redis Cluster places by the slot of the (namespaced) keys; a ring by
//! twemproxy's ketama hash of them. Sessions ask where the keys of a
//! command live ([`Router::placement`]), then for the node there
//! ([`Router::node_at`]), and never care which kind they talk to. A
//! sentinel backend is a standalone one whose node the sentinels name.

mod cluster;
mod conn;
mod flights;
mod pool;
mod redirect;
mod ring;
mod sentinel;

pub use cluster::Cluster;
pub use conn::{BackendError, Batch, BatchReply, ConnError, ConnHandle};
pub use flights::{Boarding, Flights, Leader, Shares};
pub use pool::{NodeId, NodePool};
pub use redirect::{follow_redirects, Follow};
pub use ring::Ring;
pub use sentinel::Sentinel;

use bytes::Bytes;
use std::sync::Arc;
use tenantry_config::{Backend, BackendKind, BackendName, ReadFrom};
use tenantry_protocol::Namespace;

/// Routes commands of one backend to its nodes.
#[derive(Debug)]
pub enum Router {
    Standalone(Arc<NodePool>),
    Cluster(Arc<Cluster>),
    Ring(Ring),
    Sentinel(Arc<Sentinel>),
}

/// Where a command's keys live: a cluster slot, or a ring node's index.
pub type Place = u16;

/// A command's keys live in more than one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread;

impl Router {
    pub fn new(backend: &Backend, families: &crate::telemetry::Families) -> Self {
        // Checked before a config is taken: an error here is a file that
        // changed since, and the backend's connections report it.
        let tls = backend.tls.as_ref().map(|t| {
            crate::tls::BackendConnector::new(&backend.name, t).map(Arc::new).map_err(|e| {
                tracing::error!(backend = %backend.name, error = %e, "backend TLS files unusable");
                Arc::new(e)
            })
        });
        match &backend.kind {
            BackendKind::Standalone => Router::Standalone(Arc::new(NodePool::new(backend, &backend.nodes[0], tls))),
            BackendKind::Cluster { topology_refresh } => {
                let metrics = crate::telemetry::ClusterMetrics::new(families, backend.name.as_str());
                Router::Cluster(Cluster::new(backend, *topology_refresh, metrics, tls))
            }
            BackendKind::Ring(spec) => Router::Ring(Ring::new(backend, spec, tls)),
            BackendKind::Sentinel(spec) => Router::Sentinel(Sentinel::new(backend, spec, tls)),
        }
    }

    pub fn name(&self) -> &BackendName {
        match self {
            Router::Standalone(pool) => pool.backend_name(),
            Router::Cluster(c) => c.backend_name(),
            Router::Ring(ring) => ring.nodes()[0].backend_name(),
            Router::Sentinel(s) => s.backend_name(),
        }
    }

    /// True for backends with more than one place for keys.
    pub fn is_sharded(&self) -> bool {
        !matches!(self, Router::Standalone(_) | Router::Sentinel(_))
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match self {
            Router::Cluster(c) => Some(c),
            _ => None,
        }
    }

    /// The place of the key at `args[key]` (namespaced on the wire).
    pub fn place_of(&self, ns: &Namespace, key: &[u8]) -> Option<Place> {
        match self {
            Router::Standalone(_) | Router::Sentinel(_) => None,
            Router::Cluster(_) => Some(tenantry_protocol::cluster::key_slot(ns, key)),
            Router::Ring(ring) => Some(ring.place_of(ns, key)),
        }
    }

    /// Where all of a command's keys live; `None` when it has none or the
    /// backend has one node.
    pub fn placement(&self, ns: &Namespace, args: &[Bytes], keys: &[usize]) -> Result<Option<Place>, Spread> {
        if !self.is_sharded() {
            return Ok(None);
        }
        let mut place = None;
        for &k in keys {
            let p = self.place_of(ns, &args[k]);
            if place.is_some() && place != p {
                return Err(Spread);
            }
            place = p;
        }
        Ok(place)
    }

    /// The keys of a command grouped by place, in order of first appearance;
    /// each key as its position in `keys`.
    pub fn places(&self, ns: &Namespace, args: &[Bytes], keys: &[usize]) -> Vec<(Option<Place>, Vec<usize>)> {
        let mut groups: Vec<(Option<Place>, Vec<usize>)> = Vec::new();
        let mut group_of: std::collections::HashMap<Option<Place>, usize> = std::collections::HashMap::new();
        for (at, &k) in keys.iter().enumerate() {
            let p = self.place_of(ns, &args[k]);
            let g = *group_of.entry(p).or_insert_with(|| {
                groups.push((p, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(at);
        }
        groups
    }

    /// The node for a place (`None`: any node, the first master). `read`: a
    /// read-only command, and where the tenant reads from, and the client
    /// (whose reads keep to one replica).
    pub fn node_at(&self, place: Option<Place>, read: Option<(ReadFrom, u64)>) -> Result<Arc<NodePool>, NoReplica> {
        match (self, place) {
            (Router::Standalone(pool), _) => Ok(pool.clone()),
            (Router::Sentinel(s), _) => match read {
                Some((from, client)) => s.reader(from, client),
                None => Ok(s.master()),
            },
            (Router::Cluster(c), Some(slot)) => match read {
                Some((from, client)) if from != ReadFrom::Never => c.reader(slot, from, client),
                _ => Ok(c.master(slot)),
            },
            (Router::Ring(ring), Some(index)) => Ok(ring.node(index).clone()),
            (_, None) => Ok(self.any_node()),
        }
    }

    /// A node that speaks for the backend (its server version, for HELLO),
    /// and takes commands without keys.
    pub fn any_node(&self) -> Arc<NodePool> {
        match self {
            Router::Standalone(pool) => pool.clone(),
            Router::Sentinel(s) => s.master(),
            Router::Cluster(c) => c.first_master(),
            Router::Ring(ring) => ring.node(0).clone(),
        }
    }

    /// The node holding one of tenantry's own keys (not namespaced).
    pub fn node_of_own_key(&self, key: &[u8]) -> Arc<NodePool> {
        match self {
            Router::Cluster(c) => c.master(redis_protocol::redis_keyslot(key)),
            _ => self.any_node(),
        }
    }

    /// Every node holding keys: a cluster's masters (in slot order), a ring's nodes.
    pub fn nodes(&self) -> Vec<Arc<NodePool>> {
        match self {
            Router::Standalone(pool) => vec![pool.clone()],
            Router::Sentinel(s) => vec![s.master()],
            Router::Cluster(c) => c.masters(),
            Router::Ring(ring) => ring.nodes().to_vec(),
        }
    }

    /// Every node, a cluster's replicas too.
    pub fn all_nodes(&self) -> Vec<Arc<NodePool>> {
        match self {
            Router::Cluster(c) => c.all_nodes(),
            Router::Sentinel(s) => s.all_nodes(),
            _ => self.nodes(),
        }
    }

    /// True when every node has a live connection.
    pub fn is_up(&self) -> bool {
        match self {
            Router::Standalone(pool) => pool.is_up(),
            Router::Cluster(c) => c.is_up(),
            Router::Ring(ring) => ring.nodes().iter().all(|n| n.is_up()),
            Router::Sentinel(s) => s.is_up(),
        }
    }

    /// Why the backend cannot be used, when that is known beyond its nodes
    /// being down (no master from the sentinels).
    pub fn problem(&self) -> Option<String> {
        match self {
            Router::Sentinel(s) => s.problem(),
            _ => None,
        }
    }
}

/// A read for replicas only (`read_from_replicas: always`), and none is up.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no replica of {of} is up in backend '{backend}' (read_from_replicas: always)")]
pub struct NoReplica {
    /// `slot 42`, `master "mymaster"`.
    pub of: String,
    pub backend: tenantry_config::BackendName,
}

impl From<NoReplica> for crate::error::Error {
    fn from(e: NoReplica) -> Self {
        crate::error::Error::new(crate::error::Kind::NoReplica, e.to_string())
    }
}

/// Where a read-only command goes among a master and its replicas, by the
/// tenant's choice: a replica that is up is picked by `client`, so one
/// client's reads stay in order; `none_up` is the error when `always` finds
/// none.
fn reader_among(
    master: &Arc<NodePool>,
    replicas: &[Arc<NodePool>],
    read_from: ReadFrom,
    client: u64,
    none_up: impl FnOnce() -> NoReplica,
) -> Result<Arc<NodePool>, NoReplica> {
    let up = || replicas.iter().filter(|r| r.is_up());
    let count = up().count() as u64;
    let chosen = if read_from == ReadFrom::Never || count == 0 { None } else { up().nth((client % count) as usize) };
    match (chosen, read_from) {
        (Some(replica), _) => Ok(replica.clone()),
        (None, ReadFrom::Always) => Err(none_up()),
        (None, _) => Ok(master.clone()),
    }
}
