//! The near-cache (`near_cache:` of a tenant): replies to reads of the
//! tenant's hottest keys, kept in this proxy and answered from it.
//!
//! Correctness comes from the backend: a tracking connection per node
//! (`tracker.rs`, `CLIENT TRACKING ON BCAST PREFIX <namespace>`) hears of
//! every change to the tenant's keys, by any client, and drops their
//! entries. The cache serves only while every tracker has had a PONG to a
//! PING sent less than `max_staleness` ago: invalidations come before the
//! PONG on that connection, so an entry served is at most that stale. A
//! tracker that breaks empties the cache.
//!
//! A fill races with invalidations: the slot is marked with the fill's
//! number when the read is sent, an invalidation removes the slot, and the
//! reply is kept only if its mark is still there.

mod tracker;

use crate::telemetry::TenantMetrics;
use arc_swap::ArcSwap;
use bytes::Bytes;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tenantry_protocol::{Namespace, Protocol};

pub use tracker::spawn;

/// What an entry costs beyond its bytes (its slot, list and queue places).
const ENTRY_OVERHEAD: usize = 96;

pub struct NearCache {
    config: tenantry_config::NearCache,
    namespace: Namespace,
    store: Mutex<Store>,
    /// Microseconds since `epoch` at which the oldest tracker's last
    /// answered PING was sent; 0 while any tracker is down.
    horizon_us: AtomicU64,
    epoch: Instant,
    /// The tenant's hottest client keys, from its sketch: only they are kept.
    hot: ArcSwap<HashSet<Vec<u8>>>,
    metrics: Arc<TenantMetrics>,
    counters: Counters,
}

struct Counters {
    evictions: Counter,
    invalidations: Counter,
    bytes: Gauge,
}

#[derive(Default)]
struct Store {
    slots: HashMap<Bytes, Slot>,
    /// Keys in the order they were filled: the oldest goes first when full.
    order: VecDeque<Bytes>,
    bytes: usize,
    fills: u64,
}

/// One client key's cached replies.
#[derive(Default)]
struct Slot {
    /// A read sent to fill it: its number.
    filling: Option<u64>,
    entries: Vec<Entry>,
    bytes: usize,
}

struct Entry {
    proto: Protocol,
    command: u16,
    /// The arguments after the command name.
    args: Vec<Bytes>,
    reply: Bytes,
}

/// What a read finds in the near-cache.
pub enum Lookup {
    Hit(Bytes),
    /// Not there: `Some` if this read is to fill it.
    Miss(Option<Fill>),
}

/// A read sent to fill the cache: its reply is kept unless the key changed
/// meanwhile. Dropped unused (the read failed), it clears its mark.
pub struct Fill {
    cache: Arc<NearCache>,
    key: Bytes,
    number: u64,
    proto: Protocol,
    command: u16,
    args: Vec<Bytes>,
}

impl NearCache {
    pub fn new(config: tenantry_config::NearCache, namespace: Namespace, metrics: Arc<TenantMetrics>) -> Self {
        let [evictions, invalidations] = metrics.near_cache_counters();
        let counters = Counters { evictions, invalidations, bytes: metrics.near_cache_bytes() };
        NearCache {
            config,
            namespace,
            store: Mutex::default(),
            horizon_us: AtomicU64::new(0),
            epoch: Instant::now(),
            hot: ArcSwap::default(),
            metrics,
            counters,
        }
    }

    /// Whether reads of `key` are for the cache: a key of its keyspaces
    /// that the tenant's sketch finds hot.
    pub fn wants(&self, key: &[u8]) -> bool {
        self.config.covers(key) && self.hot.load().contains(key)
    }

    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Whether entries may be served now, to a client whose last write was
    /// answered at `barrier` (`None`: it wrote nothing not yet seen).
    fn serving(&self, barrier: Option<Instant>) -> bool {
        let horizon = self.horizon_us.load(Ordering::Acquire);
        if horizon == 0 {
            return false;
        }
        let now = self.micros(Instant::now());
        let fresh = now.saturating_sub(horizon) <= self.config.max_staleness.as_micros() as u64;
        // Its write's invalidations are in once a PING sent after it is answered.
        fresh && barrier.is_none_or(|b| horizon > self.micros(b))
    }

    /// A read of `key` (`command` with `args` after its name): its cached
    /// reply, or a miss that may fill the cache.
    pub fn lookup(
        self: &Arc<Self>,
        key: &Bytes,
        proto: Protocol,
        command: u16,
        args: &[Bytes],
        barrier: Option<Instant>,
    ) -> Lookup {
        if !self.serving(barrier) {
            return Lookup::Miss(None);
        }
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let fills = store.fills + 1;
        let slot = store.slots.entry(key.clone()).or_default();
        if let Some(e) = slot.entries.iter().find(|e| e.proto == proto && e.command == command && e.args == args) {
            return Lookup::Hit(e.reply.clone());
        }
        if slot.filling.is_some() {
            return Lookup::Miss(None);
        }
        slot.filling = Some(fills);
        store.fills = fills;
        let fill = Fill { cache: self.clone(), key: key.clone(), number: fills, proto, command, args: args.to_vec() };
        Lookup::Miss(Some(fill))
    }

    /// A key changed on the backend (its name as the backend has it).
    fn invalidate(&self, backend_key: &[u8]) {
        let Some(key) = backend_key.strip_prefix(self.namespace.as_bytes()) else { return };
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = store.slots.remove(key) {
            store.bytes -= slot.bytes;
            if !slot.entries.is_empty() {
                self.counters.invalidations.inc();
            }
            self.counters.bytes.set(store.bytes as i64);
        }
    }

    /// Everything goes: a tracker broke, or the backend flushed.
    fn clear(&self) {
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let fills = store.fills;
        *store = Store { fills, ..Store::default() };
        self.counters.bytes.set(0);
    }

    fn keep(&self, fill: &Fill, reply: &[u8]) {
        // Errors (MOVED, WRONGTYPE, a timeout) say nothing lasting about the key.
        if matches!(reply.first(), Some(b'-' | b'!')) {
            return;
        }
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(slot) = store.slots.get_mut(&fill.key) else { return };
        if slot.filling != Some(fill.number) {
            return;
        }
        slot.filling = None;
        let size = ENTRY_OVERHEAD + fill.key.len() + reply.len() + fill.args.iter().map(|a| a.len()).sum::<usize>();
        if size > self.config.max_bytes {
            return;
        }
        let entry = Entry {
            proto: fill.proto,
            command: fill.command,
            args: fill.args.clone(),
            reply: Bytes::copy_from_slice(reply),
        };
        slot.entries.push(entry);
        slot.bytes += size;
        store.bytes += size;
        store.order.push_back(fill.key.clone());
        if store.order.len() > 2 * store.slots.len() + 64 {
            // Invalidated keys leave their place in the queue behind: drop
            // those (and repeats) so churn below max_bytes cannot grow it.
            let Store { slots, order, .. } = &mut *store;
            let mut seen = HashSet::new();
            order.retain(|k| slots.contains_key(k) && seen.insert(k.clone()));
        }
        while store.bytes > self.config.max_bytes {
            let Some(oldest) = store.order.pop_front() else { break };
            if let Some(slot) = store.slots.remove(&oldest) {
                store.bytes -= slot.bytes;
                self.counters.evictions.inc_by(slot.entries.len() as u64);
            }
        }
        self.counters.bytes.set(store.bytes as i64);
    }

    /// The sketch's hottest keys become the ones kept; others' entries go
    /// as they are evicted or invalidated.
    fn refresh_hot(&self, how_many: usize) {
        let hot: HashSet<Vec<u8>> = self.metrics.hot_keys().into_iter().take(how_many).map(|(k, _)| k).collect();
        if **self.hot.load() != hot {
            self.hot.store(Arc::new(hot));
        }
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.store.lock().unwrap_or_else(PoisonError::into_inner).order.len()
    }

    /// Entries and bytes held (for `/tenants` and tests).
    pub fn size(&self) -> (usize, usize) {
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        (store.slots.values().map(|s| s.entries.len()).sum(), store.bytes)
    }

    pub fn is_serving(&self) -> bool {
        self.serving(None)
    }
}

impl Fill {
    /// The read's reply came: kept, unless the key changed since it was sent.
    pub fn land(&self, reply: &[u8]) {
        self.cache.keep(self, reply);
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        let mut store = self.cache.store.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = store.slots.get_mut(&self.key) {
            if slot.filling == Some(self.number) {
                slot.filling = None;
            }
            if slot.entries.is_empty() && slot.filling.is_none() {
                store.slots.remove(&self.key);
            }
        }
    }
}

impl std::fmt::Debug for NearCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NearCache({:?})", self.config)
    }
}

#[cfg(test)]
mod tests;
