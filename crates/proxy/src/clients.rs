//! Each tenant's client connections, for CLIENT LIST, CLIENT INFO and CLIENT
//! KILL answered by tenantry: Redis's own would list and kill every tenant's
//! connections (and show only tenantry's few backend connections anyway).
//! A connection is in its tenant's list while it counts against that
//! tenant's connections; it never appears in another's.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tenantry_protocol::command::{CommandSpec, COMMANDS};

/// What CLIENT LIST shows about one connection; updated by its session.
#[derive(Debug)]
pub struct ClientHandle {
    pub id: u64,
    pub addr: Option<SocketAddr>,
    pub laddr: Option<SocketAddr>,
    created: Instant,
    /// Milliseconds after `created` of the last request.
    active_ms: AtomicU64,
    /// The last command's table entry, by address (0: none yet).
    last_cmd: AtomicUsize,
    pub name: Mutex<Option<Bytes>>,
    pub resp: AtomicU8,
    /// Channels, patterns and shard channels subscribed.
    pub subscriptions: [AtomicUsize; 3],
    /// Commands queued in MULTI, or -1 outside one.
    pub multi: AtomicI64,
    /// Raised by CLIENT KILL (the session closes at once) and at shutdown
    /// (replies owed go first).
    pub kill: Arc<crate::stop::Flag>,
    /// A blocking command of this client's is waiting on the backend.
    pub blocked: AtomicBool,
    /// CLIENT TRACKING is on.
    pub tracking: AtomicBool,
    /// CLIENT NO-EVICT ON: shown in its flags; tenantry evicts no client for
    /// memory, so it holds by itself (output limits still apply, as in Redis).
    pub no_evict: AtomicBool,
    /// The backend's id of this client's subscriber connection, for
    /// another connection's CLIENT TRACKING REDIRECT to this one.
    pub subscriber_backend_id: Arc<SubscriberId>,
    /// While a blocking command waits: answers it now (CLIENT UNBLOCK;
    /// true: with the UNBLOCKED error, false: as if it timed out).
    pub unblocker: Mutex<Option<tokio::sync::oneshot::Sender<bool>>>,
}

impl ClientHandle {
    pub fn new(id: u64, addr: Option<SocketAddr>, laddr: Option<SocketAddr>) -> Self {
        ClientHandle {
            id,
            addr,
            laddr,
            created: Instant::now(),
            active_ms: AtomicU64::new(0),
            last_cmd: AtomicUsize::new(0),
            name: Mutex::new(None),
            resp: AtomicU8::new(2),
            subscriptions: Default::default(),
            multi: AtomicI64::new(-1),
            kill: Arc::default(),
            blocked: AtomicBool::new(false),
            tracking: AtomicBool::new(false),
            no_evict: AtomicBool::new(false),
            subscriber_backend_id: Arc::default(),
            unblocker: Mutex::new(None),
        }
    }

    /// A request came in at `now` (the session's clock reading, not another).
    pub fn touch(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.created).as_millis() as u64;
        self.active_ms.store(ms, Ordering::Relaxed);
    }

    pub fn ran(&self, spec: &'static CommandSpec) {
        self.last_cmd.store(spec as *const CommandSpec as usize, Ordering::Relaxed);
    }

    /// CLIENT UNBLOCK: true if a blocking command was waiting.
    pub fn unblock(&self, with_error: bool) -> bool {
        let waiting = self.unblocker.lock().expect("not poisoned").take();
        waiting.is_some_and(|tx| tx.send(with_error).is_ok())
    }

    pub fn is_pubsub(&self) -> bool {
        self.subscriptions.iter().any(|n| n.load(Ordering::Relaxed) > 0)
    }

    fn last_command(&self) -> &'static str {
        let at = self.last_cmd.load(Ordering::Relaxed);
        if at == 0 {
            return "NULL";
        }
        let same = |s: &&'static CommandSpec| *s as *const CommandSpec as usize == at;
        COMMANDS
            .iter()
            .find(same)
            .or_else(|| COMMANDS.iter().flat_map(|c| c.subcommands.iter()).find(same))
            .map_or("NULL", |s| s.name)
    }

    /// One CLIENT LIST line, in Redis's format (memory and buffer fields,
    /// which describe Redis's own client structures, are 0).
    pub fn line(&self, user: &str) -> String {
        let now_ms = self.created.elapsed().as_millis() as u64;
        let age = now_ms / 1000;
        let idle = now_ms.saturating_sub(self.active_ms.load(Ordering::Relaxed));
        let name = self.name.lock().expect("not poisoned").clone().unwrap_or_default();
        let multi = self.multi.load(Ordering::Relaxed);
        let mut flags = String::new();
        if self.is_pubsub() {
            flags.push('P');
        }
        if multi >= 0 {
            flags.push('x');
        }
        if self.blocked.load(Ordering::Relaxed) {
            flags.push('b');
        }
        if self.tracking.load(Ordering::Relaxed) {
            flags.push('t');
        }
        if self.no_evict.load(Ordering::Relaxed) {
            flags.push('e');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let [sub, psub, ssub] = [0, 1, 2].map(|i| self.subscriptions[i].load(Ordering::Relaxed));
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={age} idle={} flags={flags} db=0 sub={sub} psub={psub} \
             ssub={ssub} multi={multi} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 \
             tot-mem=0 events=r cmd={} user={user} redir=-1 resp={}",
            self.id,
            self.addr.map_or_else(String::new, |a| a.to_string()),
            self.laddr.map_or_else(String::new, |a| a.to_string()),
            String::from_utf8_lossy(&name),
            idle / 1000,
            self.last_command(),
            self.resp.load(Ordering::Relaxed),
        )
    }
}

/// A tenant's connections, by id.
#[derive(Debug, Default)]
pub struct TenantClients(Mutex<BTreeMap<u64, Arc<ClientHandle>>>);

impl TenantClients {
    pub fn add(&self, client: &Arc<ClientHandle>) {
        self.0.lock().expect("not poisoned").insert(client.id, client.clone());
    }

    pub fn remove(&self, id: u64) {
        self.0.lock().expect("not poisoned").remove(&id);
    }

    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        self.0.lock().expect("not poisoned").values().cloned().collect()
    }
}

/// The backend's id of a client's subscriber connection (0: none yet), and
/// the trackers redirected to the client before it had one: each is told
/// (an empty frame on its pushes channel, which no backend frame is) once
/// it has, to redirect there.
#[derive(Debug, Default)]
pub struct SubscriberId {
    id: AtomicU64,
    waiting: Mutex<Vec<tokio::sync::mpsc::WeakSender<Bytes>>>,
}

impl SubscriberId {
    pub fn get(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }

    pub fn set(&self, id: u64) {
        self.id.store(id, Ordering::Relaxed);
        if id != 0 {
            let waiting = std::mem::take(&mut *self.waiting.lock().expect("not poisoned"));
            for w in waiting.into_iter().filter_map(|w| w.upgrade()) {
                let _ = w.try_send(Bytes::new());
            }
        }
    }

    /// `tracker` is told once there is an id (at once if there is one now).
    pub fn wait(&self, tracker: tokio::sync::mpsc::WeakSender<Bytes>) {
        let mut waiting = self.waiting.lock().expect("not poisoned");
        if self.get() != 0 {
            if let Some(t) = tracker.upgrade() {
                let _ = t.try_send(Bytes::new());
            }
            return;
        }
        waiting.retain(|w| w.strong_count() > 0);
        waiting.push(tracker);
    }
}
