//! A tenant's move to another backend (`tenants.x.migrate`), as its
//! sessions and the tasks that move it (`crate::migrate`) share it: where
//! this proxy is with it, the fleet's phase, the writes not yet marked, and
//! the progress `/tenants` shows.
//!
//! Writes are not sent to both backends: two proxies writing one key could
//! apply their writes in one order on the old backend and the other on the
//! new, and a second INCR or LPUSH is not the first. Instead every write
//! runs on the old backend only and carries a `WriteMark`, which dirties its
//! keys once its reply is back; the cut-over barrier waits until no write of
//! this proxy is unmarked (`pending`).

pub(crate) use super::migration_keys::{Keys, DIRTY_PREFIX};
use crate::backend::Router;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tenantry_config::{BackendName, Migrate, TenantId};
use tenantry_protocol::Namespace;
use tokio::sync::mpsc;

/// Written keys (namespaced) whose mark failed in the write's batch, to
/// mark again (`migrate/marker.rs`), and how many writes they are.
pub(crate) type Marks = (Vec<Bytes>, usize);

/// Where this proxy is with a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Local {
    /// Not yet known from the backend (just started): requests wait.
    Starting = 0,
    /// Served from the old backend; writes are marked.
    Copying = 1,
    /// At the cut-over barrier: new requests wait.
    Holding = 2,
    /// Served from the new backend.
    Cut = 3,
}

impl Local {
    pub fn name(self) -> &'static str {
        match self {
            Local::Starting => "starting",
            Local::Copying => "copying",
            Local::Holding => "holding",
            Local::Cut => "cut",
        }
    }

    pub(crate) fn from_u8(v: u8) -> Local {
        match v {
            1 => Local::Copying,
            2 => Local::Holding,
            3 => Local::Cut,
            _ => Local::Starting,
        }
    }
}

/// The fleet-wide phase, as kept in the state hash on the old backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Copy,
    Verify,
    Switch,
    Cut,
    Done,
    /// A key cannot be copied to the target as it is (bigger than the
    /// target's `proto-max-bulk-len`): nothing goes on until it can.
    Stopped,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Copy => "copy",
            Phase::Verify => "verify",
            Phase::Switch => "switch",
            Phase::Cut => "cut",
            Phase::Done => "done",
            Phase::Stopped => "stopped",
        }
    }

    pub(crate) const ALL: [Phase; 6] =
        [Phase::Copy, Phase::Verify, Phase::Switch, Phase::Cut, Phase::Done, Phase::Stopped];

    pub(crate) fn parse(s: &[u8]) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name().as_bytes() == s)
    }
}

/// What `/tenants` and the metrics show of a migration.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Progress {
    pub phase: Option<&'static str>,
    pub keys_copied: u64,
    pub bytes_copied: u64,
    pub keys_recopied: u64,
    /// Keys still to copy: of those counted when it began, the ones the
    /// backfill has not reached, and the keys written since their copy.
    pub keys_left: u64,
    pub verified: u64,
    pub mismatched: u64,
    /// Why it does not go on (an unreachable target, a copy that failed).
    pub error: Option<String>,
    /// The key that stopped it (phase `stopped`).
    pub stopped_key: Option<String>,
    /// Requests of this proxy held at the cut-over, and how long the
    /// longest and the 99th percentile waited (ms).
    pub held: u64,
    pub hold_max_ms: u64,
    pub hold_p99_ms: u64,
}

/// How long requests were held at the cut-over (this proxy's).
#[derive(Debug, Default)]
struct Holds {
    /// Waits in µs; bounded (a cut-over holds each client once or twice).
    waits: Vec<u32>,
}

const HOLDS_KEPT: usize = 100_000;

/// One tenant's migration, shared by its sessions and the tasks that move it.
#[derive(Debug)]
pub struct Migration {
    pub tenant: TenantId,
    pub spec: Migrate,
    pub from: BackendName,
    pub from_ns: Namespace,
    pub to_ns: Namespace,
    /// The backends' shared routers (not a tenant's own user's: that user may
    /// not reach tenantry's keys).
    pub source: Arc<Router>,
    pub target: Arc<Router>,
    pub(crate) keys: Keys,
    pub(crate) sync: Arc<Sync>,
    marks: mpsc::UnboundedSender<Marks>,
    /// Taken by the marker task when the supervisor starts it.
    pub(crate) marks_rx: Mutex<Option<mpsc::UnboundedReceiver<Marks>>>,
    pub(crate) started: AtomicBool,
    pub progress: Mutex<Progress>,
    holds: Mutex<Holds>,
    /// The key a copy found too big for the target (`Kind::Limit`).
    pub(crate) too_big: Mutex<Option<Bytes>>,
    /// Each target node's `proto-max-bulk-len`, and when it was read.
    pub(crate) bulk_limits: Mutex<std::collections::HashMap<String, (u64, std::time::Instant)>>,
}

/// What every `Migration` value of one migration shares, across reloads.
#[derive(Debug, Default)]
pub struct Sync {
    local: AtomicU8,
    /// Writes sent to the old backend whose keys are not yet in the dirty set.
    pub(crate) pending: AtomicUsize,
    /// Until when (ms since the epoch) this proxy may send the tenant's
    /// requests to the old backend: a while less than its heartbeat lasts.
    /// A proxy whose follower stalls (its heartbeat lapses, and the barrier
    /// stops waiting for it) holds requests instead of writing to the old
    /// backend after the cut-over.
    pub(crate) fenced_until: std::sync::atomic::AtomicU64,
    /// Cancelled when the config no longer asks for this move: its driver
    /// stops at once (sessions may hold the old value a while longer).
    pub(crate) stop: tokio_util::sync::CancellationToken,
}

impl Migration {
    /// `sync`: the previous value's, when this one replaces it (a reload).
    pub fn new(
        tenant: &tenantry_config::Tenant,
        spec: Migrate,
        source: Arc<Router>,
        target: Arc<Router>,
        sync: Option<Arc<Sync>>,
    ) -> Self {
        let (marks, marks_rx) = mpsc::unbounded_channel();
        let to_ns = spec.namespace.clone().unwrap_or_else(|| tenant.namespace.clone());
        Migration {
            tenant: tenant.id.clone(),
            keys: Keys::new(&tenant.namespace),
            from: tenant.backend.clone(),
            from_ns: tenant.namespace.clone(),
            to_ns,
            spec,
            source,
            target,
            sync: sync.unwrap_or_default(),
            marks,
            marks_rx: Mutex::new(Some(marks_rx)),
            started: AtomicBool::new(false),
            progress: Mutex::default(),
            holds: Mutex::default(),
            too_big: Mutex::default(),
            bulk_limits: Mutex::default(),
        }
    }

    /// Whether this is the move `tenant` asks for (from the same place to
    /// the same place, whatever its pace), so a new value keeps its barrier
    /// state.
    pub fn same_move(&self, tenant: &tenantry_config::Tenant, spec: &Migrate) -> bool {
        self.from == tenant.backend
            && self.from_ns == tenant.namespace
            && self.spec.to == spec.to
            && self.to_ns == *spec.namespace.as_ref().unwrap_or(&tenant.namespace)
    }

    pub fn sync(&self) -> &Arc<Sync> {
        &self.sync
    }

    pub fn local(&self) -> Local {
        Local::from_u8(self.sync.local.load(Ordering::SeqCst))
    }

    pub(crate) fn set_local(&self, to: Local) {
        self.sync.local.store(to as u8, Ordering::SeqCst);
    }

    pub fn is_cut(&self) -> bool {
        self.local() == Local::Cut
    }

    /// Whether the old backend may take a read now.
    pub fn may_read(&self) -> bool {
        matches!(self.local(), Local::Copying | Local::Holding) && self.heartbeat_fresh()
    }

    fn heartbeat_fresh(&self) -> bool {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        now < self.sync.fenced_until.load(Ordering::SeqCst)
    }

    /// A write of `keys` (namespaced) about to go to the old backend: its
    /// mark, or `None` if it must wait (the cut-over is under way). The
    /// count is taken before the phase is read, and the follower sets the
    /// phase before reading the count, so no write slips past the barrier.
    pub fn begin_write(self: &Arc<Self>, keys: Vec<Bytes>) -> Option<WriteMark> {
        self.sync.pending.fetch_add(1, Ordering::SeqCst);
        if self.local() != Local::Copying || !self.heartbeat_fresh() {
            self.sync.pending.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(WriteMark { job: self.clone(), keys, writes: 1 })
    }

    pub(crate) fn pending(&self) -> usize {
        self.sync.pending.load(Ordering::SeqCst)
    }

    /// Keys whose mark did not land with their write (the SADD failed):
    /// marked again until it does; the barrier waits for it.
    pub fn remark(&self, keys: Vec<Bytes>) {
        if keys.is_empty() {
            return;
        }
        self.sync.pending.fetch_add(1, Ordering::SeqCst);
        if self.marks.send((keys, 1)).is_err() {
            self.sync.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The migration as `/tenants` shows it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "to": self.spec.to.as_str(),
            "namespace": self.to_ns.to_string(),
            "here": self.local().name(),
            "progress": self.progress(),
        })
    }

    pub fn progress(&self) -> Progress {
        let mut p = self.progress.lock().expect("not poisoned").clone();
        let mut waits = self.holds.lock().expect("not poisoned").waits.clone();
        if !waits.is_empty() {
            waits.sort_unstable();
            p.held = waits.len() as u64;
            p.hold_max_ms = u64::from(waits[waits.len() - 1]) / 1000;
            p.hold_p99_ms = u64::from(waits[(waits.len() * 99).div_ceil(100) - 1]) / 1000;
        }
        p
    }

    /// A request held at the cut-over went on (or was refused) after `waited`.
    pub fn held(&self, waited: std::time::Duration) {
        let mut h = self.holds.lock().expect("not poisoned");
        if h.waits.len() < HOLDS_KEPT {
            h.waits.push(waited.as_micros().min(u128::from(u32::MAX)) as u32);
        }
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.progress.lock().expect("not poisoned"));
    }
}

/// A write of a migrating tenant sent to the old backend: its keys are
/// marked dirty by a SADD sent right after it, on the same connection, in
/// the same batch (`session/batcher.rs`), so no write is acknowledged before
/// its mark is stored (a proxy killed in between loses neither). Carried
/// with the batch to the connection that reads its replies; dropped there,
/// it counts the write done for the cut-over barrier.
#[derive(Debug)]
pub struct WriteMark {
    job: Arc<Migration>,
    keys: Vec<Bytes>,
    writes: usize,
}

impl WriteMark {
    /// One mark for both (writes of one batch), once their SADDs are encoded.
    pub fn absorb(&mut self, mut other: WriteMark) {
        self.writes += std::mem::take(&mut other.writes);
    }

    pub fn job(&self) -> &Arc<Migration> {
        &self.job
    }

    /// The written keys (namespaced).
    pub fn keys(&self) -> &[Bytes] {
        &self.keys
    }

    /// The written keys, taken (once their mark is encoded).
    pub fn take_keys(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.keys)
    }

    /// `SADD <dirty set of node> keys...`: the mark of this write on `node`.
    pub fn sadd(&self, node: &crate::backend::NodePool) -> Vec<Bytes> {
        let mut args = vec![Bytes::from_static(b"SADD"), Bytes::from(self.job.keys.dirty_on(node))];
        args.extend(self.keys.iter().cloned());
        args
    }
}

impl Drop for WriteMark {
    fn drop(&mut self) {
        if self.writes > 0 {
            self.job.sync.pending.fetch_sub(self.writes, Ordering::SeqCst);
        }
    }
}

/// The namespaced names of the keys at `keys` in `args`.
pub fn namespaced(ns: &Namespace, args: &[Bytes], keys: &[usize]) -> Vec<Bytes> {
    keys.iter().map(|&k| Bytes::from(ns.prefixed(&args[k]))).collect()
}
