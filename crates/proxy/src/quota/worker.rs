//! The per-node quota task every proxy runs: share this proxy's write
//! deltas and read the figures back, warn about unsafe backend settings, and,
//! on the one proxy holding the node's lease, measure and evict.

use crate::backend::NodePool;
use crate::error::{Error, Kind};
use crate::lease;
use crate::node_events::Notes;
use crate::runtime::Runtime;
use crate::tenant::TenantRt;
use crate::tenant::{figures_key, Figures, Unsent};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantry_config::{BackendName, QuotaSettings};
use tenantry_protocol::answer;
use tokio_util::sync::CancellationToken;

const LEASE_KEY: &[u8] = b"tenantry:quota:lease";
/// How often the lease is renewed and the backend's settings checked.
const LEASE_EVERY: Duration = Duration::from_secs(2);

/// Adds each namespace's pending delta and returns (measured, delta, keys,
/// expires, avg_ttl) for each; measured is -1 before the first measuring pass.
const REFRESH_SCRIPT: &str = "local out = {} \
  for i, k in ipairs(KEYS) do \
    local d, c = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i]) \
    if d ~= 0 then redis.call('hincrby', k, 'delta', d) end \
    if c ~= 0 then redis.call('hincrby', k, 'churn', c) end \
    local v = redis.call('hmget', k, 'measured', 'delta', 'keys', 'expires', 'avg_ttl') \
    out[#out + 1] = tonumber(v[1]) or -1 \
    for j = 2, 5 do out[#out + 1] = tonumber(v[j]) or 0 end \
  end return out";

/// Keeps a quota task on every backend node of the running config.
pub async fn supervise(
    runtime: Arc<ArcSwap<Runtime>>,
    notes: Arc<Notes>,
    me: lease::Holder,
    shutdown: CancellationToken,
) {
    let rt = runtime.clone();
    crate::node_tasks::per_node(rt, shutdown, move |backend, node, stop| {
        let quotas = NodeQuotas { backend, node, runtime: runtime.clone(), notes: notes.clone(), me: me.clone() };
        Arc::new(quotas).run(stop)
    })
    .await
}

pub(super) struct NodeQuotas {
    pub backend: BackendName,
    pub node: Arc<NodePool>,
    runtime: Arc<ArcSwap<Runtime>>,
    notes: Arc<Notes>,
    me: lease::Holder,
}

impl NodeQuotas {
    /// This node's tenants that are measured (those with a quota, or all
    /// with `quotas.measure_all`), in a stable order.
    pub fn tenants(&self) -> Vec<Arc<TenantRt>> {
        let rt = self.runtime.load();
        let all = rt.config.quotas.measure_all;
        let mut v: Vec<Arc<TenantRt>> = rt
            .tenants
            .values()
            .filter(|t| t.config.backend == self.backend && (all || t.config.memory.is_some()))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Nodes of the backend (a cluster's masters, a ring's nodes): each
    /// holds about its share of every tenant's keys.
    pub fn nodes(&self) -> u64 {
        self.runtime.load().backends.get(&self.backend).map_or(1, |b| b.nodes().len().max(1)) as u64
    }

    pub fn settings(&self) -> QuotaSettings {
        self.runtime.load().config.quotas
    }

    fn notes_key(&self) -> String {
        format!("{} quotas", self.node.addr())
    }

    /// Notes a problem for `/ready` and logs it when it changes.
    pub fn note(&self, topic: &str, note: Option<String>) {
        let key = format!("{} {topic}", self.notes_key());
        if self.notes.set(&key, note.clone()) {
            match note {
                Some(n) => tracing::warn!(backend = %self.backend, node = %self.node.addr(), "{n}"),
                None => tracing::info!(backend = %self.backend, node = %self.node.addr(), topic, "resolved"),
            }
        }
    }

    async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut leader: Option<CancellationToken> = None;
        let mut last_lease: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.settings().refresh) => {}
                _ = stop.cancelled() => break,
            }
            let tenants = self.tenants();
            if tenants.is_empty() {
                if let Some(work) = leader.take() {
                    work.cancel();
                    lease::release(&self.node, &self.node.local_key(LEASE_KEY), &self.me).await;
                }
                continue;
            }
            if let Err(e) = self.refresh(&tenants).await {
                tracing::debug!(backend = %self.backend, error = %e, "quota figures not refreshed");
            }
            if last_lease.is_some_and(|at| at.elapsed() < LEASE_EVERY) {
                continue;
            }
            last_lease = Some(Instant::now());
            self.check_backend(&tenants).await;
            let holds = lease::hold(&self.node, &self.node.local_key(LEASE_KEY), &self.me).await;
            let working = leader.as_ref().is_some_and(|w| !w.is_cancelled());
            match (holds, working) {
                (true, false) => {
                    tracing::info!(backend = %self.backend, node = %self.node.addr(),
                        "this proxy measures and evicts for the node's memory quotas");
                    let work = stop.child_token();
                    tokio::spawn(super::measure::run(self.clone(), work.clone()));
                    tokio::spawn(super::evict::run(self.clone(), work.clone()));
                    leader = Some(work);
                }
                (false, true) => {
                    if let Some(work) = leader.take() {
                        work.cancel();
                    }
                }
                _ => {}
            }
        }
        // The node left the backend (or the config): its figures no longer count.
        for t in self.tenants() {
            t.quota.forget_node(self.node.addr());
        }
        if let Some(work) = leader {
            work.cancel();
            lease::release(&self.node, &self.node.local_key(LEASE_KEY), &self.me).await;
        }
    }

    /// Runs one of our scripts and reads the flat integer array it returns.
    pub async fn eval(&self, script: &str, keys: &[Vec<u8>], argv: &[String]) -> Result<Vec<i64>, Error> {
        let count = keys.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"EVAL", script.as_bytes(), count.as_bytes()];
        args.extend(keys.iter().map(Vec::as_slice));
        args.extend(argv.iter().map(String::as_bytes));
        let reply = self.node.call(&args).await?;
        answer::integers(&reply).map_err(Error::from)
    }

    /// Runs a script over keys of many slots (a sample of the node's keys):
    /// a cluster refuses declared keys in several slots, so they go as
    /// arguments, and the script is flagged to reach them (and to run at
    /// maxmemory: it may be what frees memory). `body` sees them
    /// as `K`, and its own arguments as `A`.
    pub async fn eval_spread(&self, body: &str, keys: &[Vec<u8>], argv: &[String]) -> Result<Vec<i64>, Error> {
        let script = format!(
            "#!lua flags=allow-cross-slot-keys,allow-oom\nlocal n = tonumber(ARGV[1]) local K, A = {{}}, {{}} \
             for i = 2, n + 1 do K[#K + 1] = ARGV[i] end for i = n + 2, #ARGV do A[#A + 1] = ARGV[i] end\n{body}"
        );
        let count = keys.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"EVAL", script.as_bytes(), b"0", count.as_bytes()];
        args.extend(keys.iter().map(Vec::as_slice));
        args.extend(argv.iter().map(String::as_bytes));
        let reply = self.node.call(&args).await?;
        answer::integers(&reply).map_err(Error::from)
    }

    /// Adds this proxy's deltas to the shared ones and reads every figure back.
    async fn refresh(&self, tenants: &[Arc<TenantRt>]) -> Result<(), Error> {
        let keys: Vec<Vec<u8>> = tenants.iter().map(|t| self.node.local_key(&figures_key(&t.namespace))).collect();
        let addr = self.node.addr();
        let sent: Vec<Unsent> = tenants.iter().map(|t| t.quota.pending(addr)).collect();
        let sent_text: Vec<String> = sent.iter().flat_map(|u| [u.net.to_string(), u.churn.to_string()]).collect();
        let values = self.eval(REFRESH_SCRIPT, &keys, &sent_text).await?;
        if values.len() != 5 * tenants.len() {
            return Err(Error::new(Kind::BadReply, format!("{} figures for {} tenants", values.len(), tenants.len())));
        }
        for ((t, sent), v) in tenants.iter().zip(sent).zip(values.chunks(5)) {
            let figures = Figures { measured: v[0], delta: v[1], keys: v[2], expires: v[3], avg_ttl: v[4] };
            t.quota.flushed(addr, sent, figures);
            // No sample before the first measurement: unknown is not 0.
            if t.quota.measured_once() {
                t.metrics.memory_used().set(t.quota.used() as i64);
            }
            if let Some(quota) = t.config.memory {
                t.metrics.memory_quota().set(quota.bytes as i64);
            }
        }
        Ok(())
    }

    /// Warns when quotas cannot protect tenants from each other: the quotas
    /// add up to more than the node's maxmemory, or the node's own eviction
    /// policy can still evict any tenant's keys.
    async fn check_backend(&self, tenants: &[Arc<TenantRt>]) {
        let Ok(reply) = self.node.call(&[b"INFO", b"memory"]).await else { return };
        // An error reply reads as no maxmemory: nothing to warn about.
        let fields = answer::info(&reply).unwrap_or_default();
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let maxmemory: u64 = field("maxmemory").and_then(|v| v.parse().ok()).unwrap_or(0);
        let policy = field("maxmemory_policy").unwrap_or("noeviction").to_string();
        let rt = self.runtime.load();
        let quotas: u64 = tenants.iter().filter_map(|t| t.config.memory.map(|m| m.bytes)).sum::<u64>() / self.nodes();
        let mut unquoted: Vec<&str> = rt
            .tenants
            .values()
            .filter(|t| t.config.backend == self.backend && t.config.memory.is_none())
            .map(|t| t.id.as_str())
            .collect();
        unquoted.sort();
        let overcommit = maxmemory > 0 && quotas > maxmemory;
        self.note(
            "overcommit",
            overcommit.then(|| {
                format!(
                    "memory quotas overcommit the node: the tenants' quotas add up to {quotas} bytes \
                     on it, its maxmemory is {maxmemory}"
                )
            }),
        );
        let cross = maxmemory > 0 && policy != "noeviction" && (overcommit || !unquoted.is_empty());
        self.note(
            "policy",
            cross.then(|| {
                let who = if unquoted.is_empty() {
                    "the quotas overcommit it".to_string()
                } else {
                    format!("tenants without a memory_quota share it: {}", unquoted.join(", "))
                };
                format!(
                    "the node's maxmemory-policy {policy} can still evict any tenant's keys at maxmemory \
                     ({who}); give every tenant a quota within maxmemory, or set the node to noeviction"
                )
            }),
        );
    }
}
