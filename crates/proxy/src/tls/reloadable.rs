//! TLS settings built from files and rebuilt when the files change: new
//! connections get the new certificate, established ones keep theirs, and a
//! bad new file is logged while the old certificate keeps serving.
//!
//! Every live `Reloadable` is checked once a second, by the SHA-256 of its
//! files' contents, from one thread of its own: a few small reads a second,
//! and it notices Kubernetes secret volumes' symlink swaps, which file
//! watches and modification times can miss.

use super::files::{fingerprint, TlsError};
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

const POLL: Duration = Duration::from_secs(1);

type Build<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

pub struct Reloadable<T> {
    /// What the files are for, in log lines: `listener 127.0.0.1:6380`.
    what: String,
    paths: Vec<PathBuf>,
    build: Build<T>,
    current: ArcSwap<T>,
    /// The fingerprint of the files last tried, good or bad: a bad file is
    /// reported once, not every second.
    tried: Mutex<[u8; 32]>,
}

impl<T: Send + Sync + 'static> Reloadable<T> {
    /// Builds from the files now (an error is the caller's: at start or on a
    /// reload it refuses the config) and follows them from then on.
    pub fn new(
        what: String,
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, TlsError> {
        let tried = fingerprint(paths.iter().map(PathBuf::as_path));
        let first = build()?;
        let me = Arc::new(Reloadable {
            what,
            paths,
            build: Box::new(build),
            current: ArcSwap::from_pointee(first),
            tried: Mutex::new(tried),
        });
        let weak: Weak<dyn Check> = Arc::downgrade(&(me.clone() as Arc<dyn Check>));
        watched().lock().expect("not poisoned").push(weak);
        Ok(me)
    }

    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }
}

trait Check: Send + Sync {
    fn check(&self);
}

impl<T: Send + Sync> Check for Reloadable<T> {
    fn check(&self) {
        let now = fingerprint(self.paths.iter().map(PathBuf::as_path));
        {
            let mut tried = self.tried.lock().expect("not poisoned");
            if *tried == now {
                return;
            }
            *tried = now;
        }
        match (self.build)() {
            Ok(new) => {
                self.current.store(Arc::new(new));
                tracing::info!(what = %self.what, files = ?self.paths, "TLS files changed: new connections use them");
            }
            Err(e) => tracing::warn!(
                what = %self.what,
                error = %e,
                "TLS files changed but cannot be used; the previous certificate keeps serving"
            ),
        }
    }
}

/// Every `Reloadable` still alive; the thread that checks them starts with the first.
fn watched() -> &'static Mutex<Vec<Weak<dyn Check>>> {
    static WATCHED: OnceLock<Mutex<Vec<Weak<dyn Check>>>> = OnceLock::new();
    WATCHED.get_or_init(|| {
        let spawned = std::thread::Builder::new().name("tenantry-tls-files".into()).spawn(|| loop {
            std::thread::sleep(POLL);
            let live: Vec<Arc<dyn Check>> = {
                let mut list = watched().lock().expect("not poisoned");
                list.retain(|w| w.strong_count() > 0);
                list.iter().filter_map(Weak::upgrade).collect()
            };
            for r in live {
                r.check();
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the TLS file watcher: certificates will not be re-read");
        }
        Mutex::new(Vec::new())
    })
}
