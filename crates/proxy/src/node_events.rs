//! What tenantry learns from each backend node on its own: INFO figures, and
//! evictions and expirations attributed to the tenant whose key it was.
//!
//! Redis evicts and expires keys without any client asking, so no request
//! can count them: tenantry subscribes to the node's keyspace events
//! (`evicted`, `expired`) and maps each key to its tenant by namespace. Many
//! sidecars share one backend, and if each counted every event the fleet-wide
//! sum would be multiplied by the number of proxies; so one proxy per node
//! reports, chosen through the node itself: it holds a lease key
//! (`tenantry:events:lease`, renewed every 2 s, expiring after 10 s), and when
//! it dies another takes over. Events during a handover can be missed.

use crate::backend::NodePool;
use crate::error::{Error, Kind};
use crate::runtime::Runtime;
use crate::telemetry::metrics::{Families, NodeLabels};
use arc_swap::ArcSwap;
use bytes::{Buf, BytesMut};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenantry_config::BackendName;
use tenantry_protocol::answer;
use tenantry_protocol::events::Flags;
use tenantry_protocol::reply::reply_len;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

pub const LEASE_KEY: &[u8] = b"tenantry:events:lease";
const EVERY: Duration = Duration::from_secs(2);

/// Problems operators should know about, by node, for `/ready`; and each
/// node's last INFO figures, for `/backends`.
#[derive(Default)]
pub struct Notes(Mutex<HashMap<String, String>>, Mutex<HashMap<String, NodeFigures>>);

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct NodeFigures {
    pub backend: String,
    pub node: String,
    pub up: bool,
    pub used_memory: i64,
    pub maxmemory: i64,
    pub evicted_keys: i64,
    pub expired_keys: i64,
    pub connected_clients: i64,
    pub reporter: bool,
}

impl Notes {
    /// Returns true if the note changed (so it is logged once, not every retry).
    pub fn set(&self, node: &str, note: Option<String>) -> bool {
        let mut map = self.0.lock().expect("not poisoned");
        let old = match note.clone() {
            Some(n) => map.insert(node.to_string(), n),
            None => map.remove(node),
        };
        old != note
    }

    fn figures(&self, node: &str, update: impl FnOnce(&mut NodeFigures)) {
        update(self.1.lock().expect("not poisoned").entry(node.to_string()).or_default());
    }

    pub fn nodes(&self) -> Vec<NodeFigures> {
        let mut v: Vec<NodeFigures> = self.1.lock().expect("not poisoned").values().cloned().collect();
        v.sort_by(|a, b| (&a.backend, &a.node).cmp(&(&b.backend, &b.node)));
        v
    }

    pub fn all(&self) -> Vec<String> {
        let map = self.0.lock().expect("not poisoned");
        let mut v: Vec<String> = map.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        v.sort();
        v
    }
}

/// Keeps one watcher per backend node of the running config.
pub async fn supervise(
    runtime: Arc<ArcSwap<Runtime>>,
    families: Arc<Families>,
    notes: Arc<Notes>,
    me: crate::lease::Holder,
    shutdown: CancellationToken,
) {
    let rt = runtime.clone();
    crate::node_tasks::per_node(rt, shutdown, move |backend, node, stop| {
        let watcher = NodeWatcher {
            labels: NodeLabels { backend: backend.to_string(), node: node.addr().to_string() },
            backend,
            node,
            runtime: runtime.clone(),
            families: families.clone(),
            notes: notes.clone(),
            me: me.clone(),
        };
        watcher.run(stop)
    })
    .await
}

struct NodeWatcher {
    backend: BackendName,
    node: Arc<NodePool>,
    labels: NodeLabels,
    runtime: Arc<ArcSwap<Runtime>>,
    families: Arc<Families>,
    notes: Arc<Notes>,
    me: crate::lease::Holder,
}

impl NodeWatcher {
    async fn run(self, stop: CancellationToken) {
        let me = Arc::new(self);
        let mut subscriber: Option<CancellationToken> = None;
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            me.poll_info().await;
            let leader = me.hold_lease().await;
            me.families.event_reporter.get_or_create(&me.labels).set(i64::from(leader));
            me.notes.figures(&me.labels.node, |n| n.reporter = leader);
            let alive = subscriber.as_ref().is_some_and(|s| !s.is_cancelled());
            match (leader, alive) {
                (true, false) => {
                    let token = stop.child_token();
                    tokio::spawn(me.clone().subscribe(token.clone()));
                    subscriber = Some(token);
                }
                (false, true) => {
                    if let Some(s) = subscriber.take() {
                        s.cancel();
                    }
                }
                _ => {}
            }
        }
        if let Some(s) = subscriber {
            s.cancel();
        }
    }

    async fn poll_info(&self) {
        let f = &self.families;
        let info = self.node.call(&[b"INFO"]).await.ok().and_then(|reply| answer::info(&reply).ok());
        match info {
            Some(fields) => {
                for (k, v) in fields {
                    let Ok(v) = v.parse::<i64>() else { continue };
                    let (family, field): (_, fn(&mut NodeFigures) -> &mut i64) = match k.as_str() {
                        "used_memory" => (&f.backend_used_memory, |n| &mut n.used_memory),
                        "maxmemory" => (&f.backend_maxmemory, |n| &mut n.maxmemory),
                        "evicted_keys" => (&f.backend_evicted_keys, |n| &mut n.evicted_keys),
                        "expired_keys" => (&f.backend_expired_keys, |n| &mut n.expired_keys),
                        "connected_clients" => (&f.backend_connected_clients, |n| &mut n.connected_clients),
                        _ => continue,
                    };
                    family.get_or_create(&self.labels).set(v);
                    self.notes.figures(&self.labels.node, |n| *field(n) = v);
                }
                f.backend_up.get_or_create(&self.labels).set(1);
                self.notes.figures(&self.labels.node, |n| {
                    n.up = true;
                    n.backend = self.labels.backend.clone();
                    n.node = self.labels.node.clone();
                });
            }
            None => {
                f.backend_up.get_or_create(&self.labels).set(0);
                self.notes.figures(&self.labels.node, |n| n.up = false);
            }
        }
    }

    async fn hold_lease(&self) -> bool {
        crate::lease::hold(&self.node, &self.node.local_key(LEASE_KEY), &self.me).await
    }

    /// Makes sure the node publishes evicted and expired key events.
    async fn enable_events(&self) -> Result<(), Error> {
        let reply = self.node.call(&[b"CONFIG", b"GET", b"notify-keyspace-events"]).await?;
        // [name, value]
        let pair = answer::strings(&reply)?;
        let current = pair.get(1).and_then(|v| Flags::parse(v)).unwrap_or_default();
        let needs = crate::server_events::tenantry_needs();
        if current.contains(needs) {
            return Ok(());
        }
        let wanted = current.union(needs).to_config();
        let reply = self.node.call(&[b"CONFIG", b"SET", b"notify-keyspace-events", wanted.as_bytes()]).await?;
        answer::text(&reply)?;
        tracing::info!(backend = %self.backend, node = %self.labels.node, flags = %wanted, "enabled keyspace events");
        Ok(())
    }

    async fn subscribe(self: Arc<Self>, stop: CancellationToken) {
        let result = tokio::select! {
            r = self.listen() => r,
            _ = stop.cancelled() => Ok(()),
        };
        if let Err(e) = result {
            if self.notes.set(&self.labels.node, Some(format!("evictions and expirations not attributed: {e}"))) {
                tracing::warn!(backend = %self.backend, node = %self.labels.node, error = %e,
                    "evictions and expirations of this node are not attributed to tenants");
            }
        }
        stop.cancel();
    }

    async fn listen(&self) -> Result<(), Error> {
        if let Err(e) = self.enable_events().await {
            return Err(e.context(
                "cannot enable notify-keyspace-events (set it to include Exe on the backend); CONFIG SET refused",
            ));
        }
        self.notes.set(&self.labels.node, None);
        let mut conn = self.node.dedicated(tenantry_protocol::Protocol::Resp2).await?;
        let mut req = BytesMut::new();
        let args: [&[u8]; 3] = [b"PSUBSCRIBE", b"__keyevent@*__:evicted", b"__keyevent@*__:expired"];
        tenantry_protocol::encode::command(
            &mut req,
            &args,
            &[],
            &tenantry_protocol::Namespace::new("-").expect("valid"),
        );
        let lost = |e: std::io::Error| Error::caused(Kind::Backend, "subscriber connection", e);
        conn.send_all(&req).await.map_err(lost)?;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        loop {
            while let Some(len) = reply_len(&buf).map_err(|e| Error::new(Kind::BadReply, e.to_string()))? {
                self.event(&buf[..len]);
                buf.advance(len);
            }
            if conn.read_buf(&mut buf).await.map_err(lost)? == 0 {
                return Err(Error::new(Kind::Backend, "subscriber connection closed"));
            }
        }
    }

    /// `*4 pmessage <pattern> __keyevent@0__:evicted <key>`
    fn event(&self, msg: &[u8]) {
        let Ok(parts) = answer::strings(msg) else { return };
        let [kind, _pattern, channel, key] = parts.as_slice() else { return };
        if kind != b"pmessage" {
            return;
        }
        let evicted = channel.ends_with(b":evicted");
        let rt = self.runtime.load();
        let owner = rt
            .tenants
            .values()
            .filter(|t| t.config.backend == self.backend)
            .find_map(|t| t.namespace.strip(key).map(|client_key| (t, client_key)));
        if let Some((tenant, client_key)) = owner {
            let counters = tenant.metrics.keyspace(client_key);
            if evicted {
                counters.evictions.inc();
            } else {
                counters.expirations.inc();
            }
        }
    }
}
