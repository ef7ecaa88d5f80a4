//! A tenant's memory use against its quota, as every session and the quota
//! workers (`crate::quota`) share it: the figures read from its nodes, what
//! this proxy's clients wrote since, and whether a write may go (`admit`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tenantry_config::{BackendAddr, Eviction, MemoryQuota};
use tenantry_protocol::Namespace;

/// With an evicting policy, writes wait (then get -OOM) only past the quota
/// plus this fraction of it: eviction runs beside the writes, not inside them.
const HEADROOM: u64 = 50;

/// The hash on the backend holding a namespace's figures.
pub fn figures_key(namespace: &Namespace) -> Vec<u8> {
    super::own_key("quota", namespace)
}

/// What a proxy knows of one tenant's memory use; shared by every generation
/// of the config while the tenant keeps its namespace and backend.
#[derive(Debug, Default)]
pub struct QuotaState {
    /// Measured size plus everyone's deltas, as last read from the nodes.
    shared: AtomicI64,
    /// The sum of the nodes' `unsent`, for `used` without the lock.
    unsent: AtomicI64,
    /// Keys counted by the last measuring passes.
    keys: AtomicU64,
    /// Of those, keys with a TTL, and their mean TTL in ms.
    expires: AtomicU64,
    avg_ttl: AtomicU64,
    /// Bytes found by the last measuring passes.
    measured: AtomicU64,
    /// The figures have been read from the backend at least once.
    known: AtomicBool,
    /// A measuring pass has counted the tenant on some node.
    measured_once: AtomicBool,
    /// When the tenant's use last went down (this proxy's evictor freed
    /// keys, or the nodes' figures show another proxy's did), in
    /// nanoseconds since the tenants' epoch; 0 for never.
    freed_at: AtomicU64,
    /// Per node (a standalone backend's one, a cluster's masters, a ring's
    /// nodes): its figures, and this proxy's writes to it not yet added to
    /// its delta. Each node's refresh sends its own, so a write is in the
    /// delta of the node whose next measuring pass will count it, once.
    nodes: Mutex<HashMap<BackendAddr, NodeShare>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct NodeShare {
    figures: Figures,
    unsent: Unsent,
}

/// This proxy's changes to a tenant's memory on one node, not yet added to
/// the node's figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unsent {
    /// Bytes written less bytes freed.
    pub net: i64,
    /// Bytes written plus bytes freed: how much the keyspace churned, which
    /// bounds how wrong a measuring pass made meanwhile can be.
    pub churn: u64,
}

/// Whether a write may go ahead.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Over quota with `noeviction`, or eviction could not keep up: -OOM.
    Refuse,
    /// Over quota past the headroom with an evicting policy: retry shortly.
    Wait,
}

impl QuotaState {
    /// The tenant's estimated memory use in bytes.
    pub fn used(&self) -> u64 {
        let total = self.shared.load(Ordering::Relaxed) + self.unsent.load(Ordering::Relaxed);
        total.max(0) as u64
    }

    pub fn known(&self) -> bool {
        self.known.load(Ordering::Relaxed)
    }

    /// Mean bytes per key of the last measurement, if there was one.
    pub fn mean_key_bytes(&self) -> Option<u64> {
        let keys = self.keys.load(Ordering::Relaxed);
        (keys > 0).then(|| self.measured.load(Ordering::Relaxed) / keys)
    }

    /// Records bytes written to (positive) or freed on (negative) `node`.
    pub fn add_on(&self, node: &BackendAddr, bytes: i64) {
        let mut nodes = self.nodes.lock().expect("not poisoned");
        let share = match nodes.get_mut(node) {
            Some(share) => share,
            None => nodes.entry(node.clone()).or_default(),
        };
        share.unsent.net += bytes;
        share.unsent.churn += bytes.unsigned_abs();
        self.unsent.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `n` keys were deleted on `node` by a client: about the mean key size each.
    pub fn freed_keys(&self, node: &BackendAddr, n: u64) {
        if let Some(mean) = self.mean_key_bytes() {
            self.add_on(node, -((n * mean) as i64));
        }
    }

    /// Some of the tenant's memory was freed just now: eviction is making progress.
    pub(crate) fn note_freed(&self) {
        let nanos = super::epoch().elapsed().as_nanos().max(1) as u64;
        self.freed_at.store(nanos, Ordering::Relaxed);
    }

    /// When some of the tenant's memory was last seen freed, if it was.
    pub fn freed_at(&self) -> Option<Instant> {
        let nanos = self.freed_at.load(Ordering::Relaxed);
        (nanos > 0).then(|| super::epoch() + Duration::from_nanos(nanos))
    }

    pub fn admit(&self, quota: &MemoryQuota) -> Admit {
        let used = self.used();
        match quota.eviction {
            Eviction::NoEviction if used >= quota.bytes => Admit::Refuse,
            Eviction::NoEviction => Admit::Yes,
            _ if used >= quota.bytes + quota.bytes / HEADROOM => Admit::Wait,
            _ => Admit::Yes,
        }
    }

    /// This proxy's writes to `node` not yet in its delta; `flushed` once sent.
    pub(crate) fn pending(&self, node: &BackendAddr) -> Unsent {
        self.nodes.lock().expect("not poisoned").get(node).map_or_else(Unsent::default, |s| s.unsent)
    }

    /// `node` has taken `sent` into its delta and now holds these figures.
    pub(crate) fn flushed(&self, node: &BackendAddr, sent: Unsent, figures: Figures) {
        let before = self.used();
        let total = {
            let mut nodes = self.nodes.lock().expect("not poisoned");
            let share = nodes.entry(node.clone()).or_default();
            share.figures = figures;
            share.unsent.net -= sent.net;
            share.unsent.churn = share.unsent.churn.saturating_sub(sent.churn);
            nodes.values().fold(Figures::default(), |a, s| Figures {
                // -1: not measured there yet.
                measured: a.measured + s.figures.measured.max(0),
                delta: a.delta + s.figures.delta,
                keys: a.keys + s.figures.keys,
                expires: a.expires + s.figures.expires,
                // The sum of TTLs for now, divided below.
                avg_ttl: a.avg_ttl + s.figures.expires * s.figures.avg_ttl,
            })
        };
        // Shared first: for a moment `sent` counts twice, never zero times.
        self.shared.store(total.measured + total.delta, Ordering::Relaxed);
        self.unsent.fetch_sub(sent.net, Ordering::Relaxed);
        self.keys.store(total.keys.max(0) as u64, Ordering::Relaxed);
        self.expires.store(total.expires.max(0) as u64, Ordering::Relaxed);
        let avg_ttl = total.avg_ttl.checked_div(total.expires).unwrap_or(0);
        self.avg_ttl.store(avg_ttl.max(0) as u64, Ordering::Relaxed);
        self.measured.store(total.measured.max(0) as u64, Ordering::Relaxed);
        self.known.store(true, Ordering::Relaxed);
        if figures.measured >= 0 {
            self.measured_once.store(true, Ordering::Relaxed);
        }
        if self.used() < before {
            self.note_freed();
        }
    }

    /// INFO's keyspace line, as the last measuring passes counted it: keys,
    /// keys with a TTL, their mean TTL in ms. `None` before any pass.
    pub fn keyspace(&self) -> Option<(u64, u64, u64)> {
        self.measured_once().then(|| {
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            (get(&self.keys), get(&self.expires), get(&self.avg_ttl))
        })
    }

    /// Whether the tenant's memory has been measured at all: before, its
    /// use is unknown (no sample), not 0.
    pub fn measured_once(&self) -> bool {
        self.measured_once.load(Ordering::Relaxed)
    }

    /// A node left the backend (a failover's old master): its figures go,
    /// and what was written to it (its keys are measured where they are now).
    pub fn forget_node(&self, node: &BackendAddr) {
        let mut nodes = self.nodes.lock().expect("not poisoned");
        if let Some(share) = nodes.remove(node) {
            self.shared.fetch_sub(share.figures.measured.max(0) + share.figures.delta, Ordering::Relaxed);
            self.unsent.fetch_sub(share.unsent.net, Ordering::Relaxed);
        }
    }
}

/// What the backend holds about one namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Figures {
    /// -1 until a measuring pass has stored one.
    pub measured: i64,
    pub delta: i64,
    pub keys: i64,
    /// Keys with a TTL and their mean TTL in ms, as the last pass estimated.
    pub expires: i64,
    pub avg_ttl: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(bytes: u64, eviction: Eviction) -> MemoryQuota {
        MemoryQuota { bytes, eviction }
    }

    fn node() -> BackendAddr {
        BackendAddr::new("a:1")
    }

    #[test]
    fn noeviction_refuses_at_the_quota() {
        let s = QuotaState::default();
        s.add_on(&node(), 999);
        assert_eq!(s.admit(&quota(1000, Eviction::NoEviction)), Admit::Yes);
        s.add_on(&node(), 1);
        assert_eq!(s.admit(&quota(1000, Eviction::NoEviction)), Admit::Refuse);
        s.add_on(&node(), -500);
        assert_eq!(s.admit(&quota(1000, Eviction::NoEviction)), Admit::Yes);
    }

    #[test]
    fn evicting_policies_hold_writes_only_past_the_headroom() {
        let s = QuotaState::default();
        s.add_on(&node(), 1019);
        assert_eq!(s.admit(&quota(1000, Eviction::AllKeysLru)), Admit::Yes);
        s.add_on(&node(), 1);
        assert_eq!(s.admit(&quota(1000, Eviction::AllKeysLru)), Admit::Wait);
    }

    #[test]
    fn a_flush_never_loses_or_drops_bytes() {
        let (a, b) = (node(), BackendAddr::new("b:1"));
        let s = QuotaState::default();
        s.add_on(&a, 300);
        let sent = s.pending(&a);
        assert_eq!(sent, Unsent { net: 300, churn: 300 });
        s.add_on(&a, 50); // written while the flush was on its way
        s.flushed(&a, sent, Figures { measured: 1000, delta: 300, keys: 10, ..Figures::default() });
        assert_eq!(s.used(), 1350);
        assert_eq!(s.mean_key_bytes(), Some(100));
        assert!(s.known());
        // Each node sends what was written to it; the figures add up.
        s.add_on(&b, 70);
        s.add_on(&b, -20);
        s.add_on(&b, 20);
        assert_eq!(s.pending(&b), Unsent { net: 70, churn: 110 });
        s.flushed(&b, s.pending(&b), Figures { measured: 500, delta: 70, keys: 5, ..Figures::default() });
        assert_eq!(s.used(), 1000 + 300 + 50 + 500 + 70);
        // A node that leaves takes its figures and what was written to it.
        s.forget_node(&a);
        assert_eq!(s.used(), 500 + 70);
    }

    #[test]
    fn a_tenant_is_measured_once_a_node_has_stored_a_measurement() {
        let s = QuotaState::default();
        s.flushed(&node(), Unsent::default(), Figures { measured: -1, delta: 0, keys: 0, ..Figures::default() });
        assert!(s.known() && !s.measured_once());
        assert_eq!(s.used(), 0);
        s.flushed(
            &BackendAddr::new("b:1"),
            Unsent::default(),
            Figures { measured: 4000, delta: 100, keys: 10, ..Figures::default() },
        );
        assert!(s.measured_once());
        assert_eq!(s.used(), 4100, "the unmeasured node adds nothing, not -1");
    }

    #[test]
    fn memory_seen_going_down_counts_as_eviction_progress() {
        let s = QuotaState::default();
        s.flushed(&node(), Unsent::default(), Figures { measured: 10_000, delta: 0, keys: 10, ..Figures::default() });
        assert_eq!(s.freed_at(), None, "the first figures are not progress");
        s.add_on(&node(), 500);
        s.flushed(
            &node(),
            Unsent { net: 500, churn: 500 },
            Figures { measured: 10_000, delta: 500, keys: 10, ..Figures::default() },
        );
        assert_eq!(s.freed_at(), None, "our own writes arriving in the figures are not progress");
        // Another proxy's evictor took 2,000 bytes off the delta.
        let before = Instant::now();
        s.flushed(
            &node(),
            Unsent::default(),
            Figures { measured: 10_000, delta: -1_500, keys: 10, ..Figures::default() },
        );
        assert!(s.freed_at().is_some_and(|at| at >= before));
    }

    #[test]
    fn the_keyspace_line_adds_the_nodes_up() {
        let s = QuotaState::default();
        assert_eq!(s.keyspace(), None, "not measured yet");
        let figures = |keys, expires, avg_ttl| Figures { measured: 1000, delta: 0, keys, expires, avg_ttl };
        s.flushed(&node(), Unsent::default(), figures(10, 4, 1000));
        s.flushed(&BackendAddr::new("b:1"), Unsent::default(), figures(20, 1, 6000));
        // The mean TTL weighted by each node's keys with a TTL.
        assert_eq!(s.keyspace(), Some((30, 5, 2000)));
    }

    #[test]
    fn deletes_free_the_mean_key_size() {
        let s = QuotaState::default();
        s.flushed(&node(), Unsent::default(), Figures { measured: 10_000, delta: 0, keys: 10, ..Figures::default() });
        s.freed_keys(&node(), 3);
        assert_eq!(s.used(), 7_000);
    }
}
