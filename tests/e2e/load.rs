//! A continuous SET/GET load through tenantry, tallied: what failovers and
//! topology changes are measured with. Every request gets a reply, and
//! never another request's.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tenantry_tests::{RawClient, TestProxy};

/// Per-client tallies of a continuous SET/GET load.
#[derive(Default)]
pub struct Tally {
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    /// A reply that belongs to another request: must stay 0.
    pub misdelivered: AtomicU64,
    /// A request with no reply within 5 s: must stay 0.
    pub hung: AtomicU64,
    /// When the first and the last error came, in ms after the load began.
    pub first_error_ms: AtomicU64,
    pub last_error_ms: AtomicU64,
    /// The error replies seen, each once.
    pub error_texts: Mutex<BTreeSet<String>>,
    began: OnceLock<Instant>,
}

impl Tally {
    fn error(&self, reply: &[u8]) {
        let at = self.began.get().map_or(0, |b| b.elapsed().as_millis() as u64);
        if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
            self.first_error_ms.store(at, Ordering::Relaxed);
        }
        self.last_error_ms.fetch_max(at, Ordering::Relaxed);
        let text = String::from_utf8_lossy(reply).trim_end().to_string();
        self.error_texts.lock().unwrap().insert(text);
    }

    /// The time from the first error to the last one (zero if none came).
    pub fn error_window(&self) -> Duration {
        if self.errors.load(Ordering::Relaxed) == 0 {
            return Duration::ZERO;
        }
        let (first, last) = (self.first_error_ms.load(Ordering::Relaxed), self.last_error_ms.load(Ordering::Relaxed));
        Duration::from_millis(last - first)
    }
}

/// Each client SETs then GETs its own keys with values naming client, key
/// and round; a GET may see an older value of its own key (a write lost
/// with a killed master), never anything else.
async fn load(mut c: RawClient, client: usize, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let key = format!("load:{client}:{}", round % 16);
        let value = format!("c{client}-{key}-{round}");
        let set =
            tokio::time::timeout(Duration::from_secs(5), c.cmd(&[b"SET", key.as_bytes(), value.as_bytes()])).await;
        let Ok(set) = set else {
            tally.hung.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let set_ok = set == b"+OK\r\n";
        if set_ok {
            tally.ok.fetch_add(1, Ordering::Relaxed);
        } else if set.starts_with(b"-") {
            tally.error(&set);
        } else {
            tally.misdelivered.fetch_add(1, Ordering::Relaxed);
        }
        let get = tokio::time::timeout(Duration::from_secs(5), c.cmd(&[b"GET", key.as_bytes()])).await;
        let Ok(get) = get else {
            tally.hung.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if get.starts_with(b"-") {
            tally.error(&get);
        } else if get == b"$-1\r\n" {
            tally.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            let text = String::from_utf8_lossy(&get);
            let prefix = format!("c{client}-{key}-");
            let own = text.lines().nth(1).and_then(|v| v.strip_prefix(&prefix)).and_then(|n| n.parse::<u64>().ok());
            match own {
                Some(n) if n <= round && (!set_ok || n == round || n < round) => {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    eprintln!("client {client} round {round}: GET {key} got {text:?}");
                    tally.misdelivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

pub async fn start_load(
    proxy: &TestProxy,
    clients: usize,
) -> (Arc<AtomicBool>, Arc<Tally>, Vec<tokio::task::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let _ = tally.began.set(Instant::now());
    let mut tasks = Vec::new();
    for client in 0..clients {
        let c = proxy.raw().await;
        tasks.push(tokio::spawn(load(c, client, stop.clone(), tally.clone())));
    }
    (stop, tally, tasks)
}

pub fn snapshot(t: &Tally) -> (u64, u64, u64, u64) {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    (get(&t.ok), get(&t.errors), get(&t.misdelivered), get(&t.hung))
}
