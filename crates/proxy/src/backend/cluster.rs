//! A Redis Cluster backend: the slot map, discovered from the seed nodes and
//! kept current (periodically, and at once after a `MOVED` or a broken
//! connection), and the pools of every node in it.

use super::conn::BackendTlsSetup;
use super::pool::NodePool;
use crate::error::{Error, Kind};
use crate::telemetry::ClusterMetrics;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tenantry_config::{Backend, BackendAddr, ReadFrom};
use tenantry_protocol::cluster::{parse_cluster_slots, SlotRange, SLOTS};
use tokio::sync::Notify;

/// No slot: `slots` entries for slots no master serves (yet).
const UNASSIGNED: u16 = u16::MAX;
/// Forced refreshes come at most this often, however many errors ask.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(100);

/// One master and its replicas.
#[derive(Debug, Clone)]
struct Shard {
    master: Arc<NodePool>,
    replicas: Vec<Arc<NodePool>>,
}

/// The slot map at one moment.
#[derive(Debug)]
struct Topology {
    /// Per slot, the index of its shard in `shards`.
    slots: Box<[u16]>,
    /// In the order of the first slot each serves, so a SCAN cursor that
    /// names a shard by index still names it after a failover.
    shards: Vec<Shard>,
}

#[derive(Debug)]
pub struct Cluster {
    backend: Backend,
    topology: ArcSwap<Topology>,
    /// Every node's pool, masters and replicas, by address; reused across
    /// refreshes so connections survive them.
    pools: Mutex<HashMap<BackendAddr, Arc<NodePool>>>,
    /// Used until the first map arrives, and to rediscover from.
    seeds: Vec<Arc<NodePool>>,
    refresh: Arc<Notify>,
    pub metrics: ClusterMetrics,
    /// Every node it learns of is reached with the backend's TLS.
    tls: BackendTlsSetup,
}

impl Cluster {
    pub fn new(backend: &Backend, refresh_every: Duration, metrics: ClusterMetrics, tls: BackendTlsSetup) -> Arc<Self> {
        let seeds: Vec<Arc<NodePool>> =
            backend.nodes.iter().map(|a| Arc::new(NodePool::new(backend, a, tls.clone()))).collect();
        let pools = seeds.iter().map(|p| (p.addr().clone(), p.clone())).collect();
        let cluster = Arc::new(Cluster {
            backend: backend.clone(),
            topology: ArcSwap::from_pointee(Topology { slots: vec![UNASSIGNED; SLOTS].into(), shards: Vec::new() }),
            pools: Mutex::new(pools),
            seeds,
            refresh: Arc::new(Notify::new()),
            metrics,
            tls,
        });
        tokio::spawn(keep_current(Arc::downgrade(&cluster), cluster.refresh.clone(), refresh_every));
        cluster
    }

    pub fn backend_name(&self) -> &tenantry_config::BackendName {
        &self.backend.name
    }

    /// The master serving `slot` (a seed while the map is unknown: it answers
    /// `MOVED` to where the slot lives).
    pub fn master(&self, slot: u16) -> Arc<NodePool> {
        let topology = self.topology.load();
        match topology.slots[slot as usize] {
            UNASSIGNED => self.seeds[0].clone(),
            shard => topology.shards[shard as usize].master.clone(),
        }
    }

    /// Where a read-only command on `slot` goes, by the tenant's choice. The
    /// replica is picked by `client`, so one client's reads stay in order.
    pub fn reader(&self, slot: u16, read_from: ReadFrom, client: u64) -> Result<Arc<NodePool>, super::NoReplica> {
        let topology = self.topology.load();
        let shard = match topology.slots[slot as usize] {
            UNASSIGNED => return Ok(self.seeds[0].clone()),
            shard => &topology.shards[shard as usize],
        };
        super::reader_among(&shard.master, &shard.replicas, read_from, client, || super::NoReplica {
            of: format!("slot {slot}"),
            backend: self.backend.name.clone(),
        })
    }

    /// The master of the first slots (a seed before the map is known).
    pub fn first_master(&self) -> Arc<NodePool> {
        match self.topology.load().shards.first() {
            Some(shard) => shard.master.clone(),
            None => self.seeds[0].clone(),
        }
    }

    /// Every master, in shard order (the seeds before the map is known).
    pub fn masters(&self) -> Vec<Arc<NodePool>> {
        let topology = self.topology.load();
        if topology.shards.is_empty() {
            return self.seeds[..1].to_vec();
        }
        topology.shards.iter().map(|s| s.master.clone()).collect()
    }

    /// Every master and replica of the map (the seeds before it is known).
    pub fn all_nodes(&self) -> Vec<Arc<NodePool>> {
        let topology = self.topology.load();
        if topology.shards.is_empty() {
            return self.seeds.clone();
        }
        topology.shards.iter().flat_map(|s| std::iter::once(&s.master).chain(&s.replicas)).cloned().collect()
    }

    /// The pool of a node a redirection named.
    pub fn node(&self, addr: &str) -> Arc<NodePool> {
        self.pool(&BackendAddr::new(addr), false)
    }

    fn pool(&self, addr: &BackendAddr, readonly: bool) -> Arc<NodePool> {
        let mut pools = self.pools.lock().expect("not poisoned");
        pools
            .entry(addr.clone())
            .or_insert_with(|| Arc::new(NodePool::for_node(&self.backend, addr, readonly, self.tls.clone())))
            .clone()
    }

    /// `MOVED`: the slot has a new master. Used at once, and the whole map re-read.
    pub fn moved(&self, slot: u16, addr: &str) {
        let node = self.node(addr);
        let current = self.topology.load_full();
        if let Some(index) = current.shards.iter().position(|s| Arc::ptr_eq(&s.master, &node)) {
            let mut slots = current.slots.clone();
            slots[slot as usize] = index as u16;
            self.topology.store(Arc::new(Topology { slots, shards: current.shards.clone() }));
        }
        self.refresh_soon();
    }

    /// Something looked stale (a redirection, a broken node): re-read the map.
    pub fn refresh_soon(&self) {
        self.refresh.notify_one();
    }

    pub fn is_up(&self) -> bool {
        let topology = self.topology.load();
        !topology.shards.is_empty() && topology.shards.iter().all(|s| s.master.is_up())
    }

    /// Reads the slot map from a known master, else a seed; installs it.
    async fn refresh(&self) -> Result<(), Error> {
        let mut askable = self.masters();
        askable.extend(self.seeds.iter().cloned());
        let mut last = Error::new(Kind::Backend, "no node to ask");
        for node in askable.iter().filter(|n| n.is_up()).chain(askable.iter().filter(|n| !n.is_up())) {
            let reply = match node.call(&[b"CLUSTER", b"SLOTS"]).await {
                Ok(r) => r,
                Err(e) => {
                    last = e.into();
                    continue;
                }
            };
            let host = node.addr().host();
            match parse_cluster_slots(&reply, host) {
                Ok(ranges) if !ranges.is_empty() => {
                    self.install(&ranges);
                    return Ok(());
                }
                Ok(_) => last = Error::new(Kind::BadReply, format!("{} knows no slots", node.addr())),
                Err(e) => last = Error::new(Kind::BadReply, format!("{}: {e}", node.addr())),
            }
        }
        Err(last)
    }

    fn install(&self, ranges: &[SlotRange]) {
        let mut ranges = ranges.to_vec();
        ranges.sort_by_key(|r| r.start);
        let mut slots = vec![UNASSIGNED; SLOTS].into_boxed_slice();
        let mut shards: Vec<Shard> = Vec::new();
        let mut index_of: HashMap<String, u16> = HashMap::new();
        for r in &ranges {
            let index = *index_of.entry(r.master.clone()).or_insert_with(|| {
                shards.push(Shard {
                    master: self.pool(&BackendAddr::new(&r.master), false),
                    replicas: r.replicas.iter().map(|a| self.pool(&BackendAddr::new(a), true)).collect(),
                });
                (shards.len() - 1) as u16
            });
            slots[r.start as usize..=r.end as usize].fill(index);
        }
        // Tags for tenantry's own keys on each master: the first number
        // whose slot it serves (the same on every proxy).
        for (index, shard) in shards.iter().enumerate() {
            let tag = (0u32..100_000)
                .map(|i| i.to_string())
                .find(|t| slots[redis_protocol::redis_keyslot(t.as_bytes()) as usize] == index as u16);
            shard.master.set_local_tag(tag.map(Arc::from));
        }
        let changed = {
            let old = self.topology.load();
            old.slots != slots || old.shards.len() != shards.len()
        };
        // Nodes gone from the map close their connections when the last
        // request holding their pool is answered; seeds stay.
        {
            let mut pools = self.pools.lock().expect("not poisoned");
            let keep = |addr: &BackendAddr| {
                shards.iter().any(|s| s.master.addr() == addr || s.replicas.iter().any(|r| r.addr() == addr))
                    || self.seeds.iter().any(|s| s.addr() == addr)
            };
            pools.retain(|addr, _| keep(addr));
        }
        if changed {
            let masters: Vec<String> = shards.iter().map(|s| s.master.addr().to_string()).collect();
            tracing::info!(backend = %self.backend.name, ?masters, "cluster slot map updated");
        }
        self.metrics.masters.set(shards.len() as i64);
        self.topology.store(Arc::new(Topology { slots, shards }));
    }
}

/// Keeps the map current until the cluster router is dropped (noticed at
/// the next wake-up: it holds no strong reference while it waits).
async fn keep_current(cluster: Weak<Cluster>, wake: Arc<Notify>, every: Duration) {
    loop {
        let delay = {
            let Some(c) = cluster.upgrade() else { return };
            match c.refresh().await {
                Ok(()) => {
                    c.metrics.refreshed.inc();
                    every
                }
                Err(e) => {
                    c.metrics.refresh_failed.inc();
                    tracing::warn!(backend = %c.backend.name, error = %e, "cluster slot map not refreshed");
                    // An unknown map is retried soon rather than at the period.
                    every.min(Duration::from_millis(500))
                }
            }
        };
        tokio::select! {
            _ = wake.notified() => tokio::time::sleep(MIN_REFRESH_GAP).await,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
