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
    /// Each source node's set of the keys written on it since the copy
    /// began, to copy again (`dirty_on`): written in the same batch as the
    /// write, on the same connection, so a write is never acknowledged
    /// without its mark.
    dirty_base: String,
    /// Who drives the migration.
    pub lease: Vec<u8>,
    base: String,
}

/// The start of every dirty set's name: a tenant's own backend user may
/// write there (write-only, `%W~`), or its writes' marks could not go in
/// their batches (`backend_users.rs`).
pub const DIRTY_PREFIX: &str = "tenantry:migrate:dirty:";

impl Keys {
    /// The ACL key pattern of the dirty sets of a move from `from`.
    pub fn dirty_acl_pattern(from: &Namespace) -> String {
        format!("%W~{DIRTY_PREFIX}{}*", hex(from))
    }

    pub fn new(from: &Namespace) -> Self {
        let tag = hex(from);
        let base = format!("tenantry:migrate:{{{tag}}}");
        Keys {
            state: format!("{base}:state").into_bytes(),
            dirty_base: format!("{DIRTY_PREFIX}{tag}"),
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

    /// The dirty set on `node` of the source (with the node's own hash tag
    /// on a cluster, so it lives there).
    pub fn dirty_on(&self, node: &NodePool) -> Vec<u8> {
        node.local_key(self.dirty_base.as_bytes())
    }

    /// On `node`, the keys the driver has taken from the dirty set and is
    /// copying (same hash tag): a driver that dies copying them leaves them
    /// there, and the next copies them first.
    pub fn copying_on(&self, node: &NodePool) -> Vec<u8> {
        node.local_key(format!("{}:copying", self.dirty_base).as_bytes())
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

/// The namespace in hex: one name for the move's keys whatever characters
/// the namespace holds.
fn hex(ns: &Namespace) -> String {
    ns.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}
