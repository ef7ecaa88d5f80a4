//! A ring backend: standalone nodes, each key on the node twemproxy's
//! ketama distribution gives its namespaced (wire) form.

use super::pool::NodePool;
use std::sync::Arc;
use tenantry_config::{Backend, RingHash, RingSpec};
use tenantry_protocol::ketama::{Continuum, KeyHash};
use tenantry_protocol::Namespace;

#[derive(Debug)]
pub struct Ring {
    nodes: Vec<Arc<NodePool>>,
    continuum: Continuum,
}

impl Ring {
    pub fn new(backend: &Backend, spec: &RingSpec, tls: super::conn::BackendTlsSetup) -> Self {
        let hash = match spec.hash {
            RingHash::Md5 => KeyHash::Md5,
            RingHash::Fnv164 => KeyHash::Fnv1_64,
            RingHash::Fnv1a64 => KeyHash::Fnv1a64,
            RingHash::Fnv132 => KeyHash::Fnv1_32,
            RingHash::Fnv1a32 => KeyHash::Fnv1a32,
        };
        let points: Vec<(String, u32)> = spec.names.iter().cloned().zip(spec.weights.iter().copied()).collect();
        Ring {
            nodes: backend.nodes.iter().map(|a| Arc::new(NodePool::new(backend, a, tls.clone()))).collect(),
            continuum: Continuum::new(&points, hash, spec.hash_tag),
        }
    }

    pub fn place_of(&self, ns: &Namespace, key: &[u8]) -> u16 {
        let mut wire = Vec::with_capacity(ns.len() + key.len());
        wire.extend_from_slice(ns.as_bytes());
        wire.extend_from_slice(key);
        self.continuum.node_for(&wire) as u16
    }

    pub fn node(&self, index: u16) -> &Arc<NodePool> {
        &self.nodes[index as usize]
    }

    pub fn nodes(&self) -> &[Arc<NodePool>] {
        &self.nodes
    }
}
