//! A backend found through Redis Sentinel: the master (and its replicas)
//! that the sentinels name, followed across failovers.
//!
//! The sentinels are asked at start, every `topology_refresh`, at once when
//! one of them announces `+switch-master` on its Pub/Sub, and whenever a
//! connection to the master fails or breaks. Each connection to the master
//! checks `ROLE` after its handshake, so a node that was demoted (whose
//! connections the sentinels' reconfiguration kills) is never written to
//! again by a reconnect. While no master is known, the backend's commands
//! fail at once with the reason.

use super::conn::{BackendTlsSetup, ConnSettings};
use super::pool::NodePool;
use crate::stream::Stream;
use arc_swap::ArcSwap;
use bytes::BytesMut;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tenantry_config::{Backend, BackendAddr, ReadFrom, SentinelSpec};
use tenantry_protocol::reply::ReplyScanner;
use tenantry_protocol::sentinel::{self, MasterView};
use tenantry_protocol::{answer, Protocol};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Sentinels are asked at most this often, however many failures prompt it.
const MIN_ASK_GAP: Duration = Duration::from_millis(100);
/// A lost `+switch-master` subscription is retried after this long.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

/// The master and replicas as last named.
#[derive(Debug, Default)]
struct Known {
    master: Option<Arc<NodePool>>,
    replicas: Vec<Arc<NodePool>>,
}

#[derive(Debug)]
pub struct Sentinel {
    backend: Backend,
    spec: SentinelSpec,
    known: ArcSwap<Known>,
    /// One connection per sentinel, for its answers.
    sentinels: Vec<Arc<NodePool>>,
    /// Stands for the master while none is known: fails with `why`.
    nowhere: Arc<NodePool>,
    why: Arc<Mutex<String>>,
    ask: Arc<Notify>,
    tls: BackendTlsSetup,
    /// Ends the asking and subscribing tasks with the backend.
    _stop: DropGuard,
}

impl Sentinel {
    pub fn new(backend: &Backend, spec: &SentinelSpec, tls: BackendTlsSetup) -> Arc<Self> {
        let mut as_sentinel = backend.clone();
        as_sentinel.auth = spec.auth.clone();
        as_sentinel.connections = 1;
        let sentinels: Vec<Arc<NodePool>> =
            backend.nodes.iter().map(|a| Arc::new(NodePool::new(&as_sentinel, a, tls.clone()))).collect();
        let why = Arc::new(Mutex::new(format!("the sentinels have not named master {:?} yet", spec.master_name)));
        let mut settings = ConnSettings::new(backend, &BackendAddr::new(&spec.master_name), None);
        settings.nowhere = Some(why.clone());
        let stop = CancellationToken::new();
        let ask = Arc::new(Notify::new());
        let this = Arc::new(Sentinel {
            backend: backend.clone(),
            spec: spec.clone(),
            known: ArcSwap::from_pointee(Known::default()),
            nowhere: Arc::new(NodePool::with_settings(backend, settings)),
            sentinels,
            why,
            ask: ask.clone(),
            tls,
            _stop: stop.clone().drop_guard(),
        });
        for s in &this.sentinels {
            tokio::spawn(follow_switches(s.clone(), spec.master_name.clone(), ask.clone(), stop.clone()));
        }
        tokio::spawn(keep_current(Arc::downgrade(&this), ask, spec.refresh, stop));
        this
    }

    pub fn backend_name(&self) -> &tenantry_config::BackendName {
        &self.backend.name
    }

    /// The master (while none is known, a pool whose commands fail with why).
    pub fn master(&self) -> Arc<NodePool> {
        self.known.load().master.clone().unwrap_or_else(|| self.nowhere.clone())
    }

    /// Where a read-only command goes, by the tenant's choice; the replica
    /// is picked by `client`, so one client's reads stay in order.
    pub fn reader(&self, read_from: ReadFrom, client: u64) -> Result<Arc<NodePool>, super::NoReplica> {
        let known = self.known.load();
        super::reader_among(&self.master(), &known.replicas, read_from, client, || super::NoReplica {
            of: format!("master {:?}", self.spec.master_name),
            backend: self.backend.name.clone(),
        })
    }

    /// The master and the replicas.
    pub fn all_nodes(&self) -> Vec<Arc<NodePool>> {
        let known = self.known.load();
        std::iter::once(self.master()).chain(known.replicas.iter().cloned()).collect()
    }

    pub fn is_up(&self) -> bool {
        self.known.load().master.as_ref().is_some_and(|m| m.is_up())
    }

    /// Why no master is known, if none is.
    pub fn problem(&self) -> Option<String> {
        match &self.known.load().master {
            Some(_) => None,
            None => Some(self.why.lock().expect("not poisoned").clone()),
        }
    }

    /// Asks every sentinel, and installs what they name.
    async fn ask_sentinels(&self) {
        let name = self.spec.master_name.as_bytes();
        let mut asked = tokio::task::JoinSet::new();
        for (i, s) in self.sentinels.iter().enumerate() {
            let s = s.clone();
            let name = name.to_vec();
            asked.spawn(async move {
                let view = match s.call(&[b"SENTINEL", b"MASTER", &name]).await {
                    Ok(reply) => sentinel::master_view(&reply).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let replicas = match &view {
                    Ok(_) => s.call(&[b"SENTINEL", b"REPLICAS", &name]).await.ok(),
                    Err(_) => None,
                };
                (i, view, replicas)
            });
        }
        let mut answers: Vec<(usize, Result<MasterView, String>, Option<bytes::Bytes>)> = Vec::new();
        while let Some(done) = asked.join_next().await {
            if let Ok(answer) = done {
                answers.push(answer);
            }
        }
        answers.sort_by_key(|a| a.0);
        let views: Vec<(String, Result<MasterView, String>)> =
            answers.iter().map(|(i, v, _)| (self.sentinels[*i].addr().to_string(), v.clone())).collect();
        match sentinel::choose(&self.spec.master_name, &views) {
            Ok(master) => {
                // The replicas as the sentinel of the chosen view lists them.
                let replicas = answers
                    .iter()
                    .find(|(_, v, _)| v.as_ref().is_ok_and(|v| *v == master))
                    .and_then(|(_, _, r)| r.as_ref())
                    .and_then(|r| sentinel::usable_replicas(r).ok())
                    .unwrap_or_default();
                self.install(&master.addr, &replicas);
            }
            // Sentinels that cannot be reached say nothing against the master
            // in use: its connections keep checking ROLE, and serve on.
            Err(why) if answers.iter().all(|(_, v, _)| v.is_err()) && self.known.load().master.is_some() => {
                self.unanswered(why)
            }
            Err(why) => self.lose(why),
        }
    }

    fn unanswered(&self, why: String) {
        let mut current = self.why.lock().expect("not poisoned");
        if *current != why {
            tracing::warn!(backend = %self.backend.name, error = %why, "sentinels not answering; the master in use serves on");
            *current = why;
        }
    }

    fn install(&self, master: &str, replicas: &[String]) {
        self.why.lock().expect("not poisoned").clear();
        let known = self.known.load();
        let same_master = known.master.as_ref().is_some_and(|m| m.addr().as_str() == master);
        let same_replicas = known.replicas.len() == replicas.len()
            && known.replicas.iter().zip(replicas).all(|(r, a)| r.addr().as_str() == a);
        if same_master && same_replicas {
            return;
        }
        let master_pool = match &known.master {
            Some(m) if same_master => m.clone(),
            _ => {
                tracing::info!(backend = %self.backend.name, master_name = %self.spec.master_name, %master, "sentinels name the master");
                let mut settings = ConnSettings::new(&self.backend, &BackendAddr::new(master), self.tls.clone());
                settings.must_be_master = true;
                settings.on_broken = Some(self.ask.clone());
                Arc::new(NodePool::with_settings(&self.backend, settings))
            }
        };
        let replica_pools = replicas
            .iter()
            .map(|a| {
                known.replicas.iter().find(|r| r.addr().as_str() == a).cloned().unwrap_or_else(|| {
                    Arc::new(NodePool::for_node(&self.backend, &BackendAddr::new(a), false, self.tls.clone()))
                })
            })
            .collect();
        self.known.store(Arc::new(Known { master: Some(master_pool), replicas: replica_pools }));
    }

    /// No master can be named: the backend's commands fail with `why`.
    fn lose(&self, why: String) {
        let mut current = self.why.lock().expect("not poisoned");
        if *current != why || self.known.load().master.is_some() {
            tracing::error!(backend = %self.backend.name, error = %why, "no master from the sentinels");
        }
        *current = why;
        drop(current);
        if self.known.load().master.is_some() {
            self.known.store(Arc::new(Known::default()));
        }
    }
}

/// Asks the sentinels at start, then when prompted or every `every`.
async fn keep_current(sentinel: Weak<Sentinel>, ask: Arc<Notify>, every: Duration, stop: CancellationToken) {
    loop {
        let Some(s) = sentinel.upgrade() else { return };
        tokio::select! {
            _ = s.ask_sentinels() => {}
            _ = stop.cancelled() => return,
        }
        drop(s);
        tokio::select! {
            _ = ask.notified() => {}
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        tokio::time::sleep(MIN_ASK_GAP).await;
    }
}

/// Keeps a subscription to one sentinel's `+switch-master` and prompts a
/// new ask for each failover it announces (and each time the subscription
/// is made again, as one may have been missed meanwhile).
async fn follow_switches(sentinel: Arc<NodePool>, master_name: String, ask: Arc<Notify>, stop: CancellationToken) {
    loop {
        let why = tokio::select! {
            why = subscribed(&sentinel, &master_name, &ask) => why,
            _ = stop.cancelled() => return,
        };
        tracing::debug!(sentinel = %sentinel.addr(), error = %why, "sentinel subscription lost");
        tokio::select! {
            _ = tokio::time::sleep(RESUBSCRIBE) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn subscribed(sentinel: &NodePool, master_name: &str, ask: &Notify) -> String {
    let mut stream: Stream = match sentinel.dedicated(Protocol::Resp2).await {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    if let Err(e) = stream.send_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\n+switch-master\r\n").await {
        return e.to_string();
    }
    let mut buf = BytesMut::with_capacity(1024);
    let mut scanner = ReplyScanner::new();
    let mut subscribed = false;
    loop {
        loop {
            let n = match scanner.scan(&buf) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => return format!("invalid reply: {e}"),
            };
            let message = buf.split_to(n);
            let Ok(parts) = answer::strings(&message) else { continue };
            match parts.first().map(Vec::as_slice) {
                Some(b"subscribe") if !subscribed => {
                    subscribed = true;
                    ask.notify_one();
                }
                Some(b"message") => {
                    if let Some(to) = parts.get(2).and_then(|p| sentinel::switched_to(p, master_name)) {
                        tracing::info!(sentinel = %sentinel.addr(), %master_name, new_master = %to, "+switch-master");
                        ask.notify_one();
                    }
                }
                _ => {}
            }
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) => return "closed by the sentinel".into(),
            Ok(_) => {}
            Err(e) => return e.to_string(),
        }
    }
}
