//! tenantry's own keys for one migration, on the old backend. They share
//! one hash tag (the old namespace in hex), so on a cluster they live on
//! one node, which every proxy finds the same way.

use crate::backend::{NodePool, Router};
use std::sync::Arc;
use tenantry_protocol::Namespace;

#[derive(Debug, Clone)]
pub struct Keys {
    /// A hash: target, phase, switch number, progress, backfill cursors.
    pub state: Vec<u8>,
    /// A set: keys written since the copy began, to copy again.
    pub dirty: Vec<u8>,
    /// Who drives the migration.
    pub lease: Vec<u8>,
    base: String,
}

impl Keys {
    pub fn new(from: &Namespace) -> Self {
        let tag: String = from.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let base = format!("tenantry:migrate:{{{tag}}}");
        Keys {
            state: format!("{base}:state").into_bytes(),
            dirty: format!("{base}:dirty").into_bytes(),
            lease: format!("{base}:lease").into_bytes(),
            base,
        }
    }

    /// A sorted set of the proxies serving the tenant, each scored with
    /// when its heartbeat runs out (ms since the epoch): the barrier waits
    /// for every live one.
    pub fn members(&self) -> Vec<u8> {
        format!("{}:members", self.base).into_bytes()
    }

    /// A proxy's answer at the barrier: the switch number it is holding for.
    pub fn ack(&self, member: &[u8]) -> Vec<u8> {
        let mut key = format!("{}:ack:", self.base).into_bytes();
        key.extend_from_slice(member);
        key
    }

    /// The mark planted on each node of the target (`migrate/target.rs`):
    /// without the old namespace's hash tag, as each node's own is added.
    pub fn target_mark(&self) -> Vec<u8> {
        let tag = self.base["tenantry:migrate:".len()..].trim_matches(|c| c == '{' || c == '}');
        format!("tenantry:migrate:target:{tag}").into_bytes()
    }

    /// A SCAN pattern matching every one of them (the acks too).
    pub fn pattern(&self) -> Vec<u8> {
        format!("{}:*", self.base).into_bytes()
    }

    /// Where they all live.
    pub fn node(&self, source: &Router) -> Arc<NodePool> {
        source.node_of_own_key(&self.state)
    }
}
