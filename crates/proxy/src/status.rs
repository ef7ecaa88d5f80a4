//! What operators can see of the running config: its version, the last
//! reload's outcome, settings that need a restart, namespace cleanups.

use crate::node_events::Notes;
use crate::telemetry::Families;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CleanupLabel {
    pub tenant: String,
    pub namespace: String,
}

/// Progress of deleting one old namespace generation.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CleanupProgress {
    pub tenant: String,
    pub backend: String,
    pub namespace: String,
    pub deleted: u64,
    pub done: bool,
    pub error: Option<String>,
}

#[derive(Default)]
pub struct Status {
    pub registry: Mutex<Registry>,
    pub families: Arc<Families>,
    pub notes: Arc<Notes>,
    pub reloads: Family<ResultLabel, Counter>,
    pub config_info: Family<VersionLabel, Gauge>,
    pub cleanup_deleted: Family<CleanupLabel, Counter>,
    inner: Mutex<Inner>,
    /// Shutting down: `/ready` says 503 from the first moment.
    pub draining: std::sync::atomic::AtomicBool,
    /// `POST /drain` asks the process to drain, as SIGTERM does.
    pub drain_requested: tokio::sync::Notify,
}

#[derive(Default, Clone, serde::Serialize)]
struct Inner {
    version: String,
    /// Unix seconds.
    loaded_at: Option<u64>,
    last_error: Option<String>,
    needs_restart: Vec<String>,
    cleanups: Vec<CleanupProgress>,
}

impl Status {
    pub fn new(version: &str) -> Self {
        let status = Status { families: Arc::new(Families::new()), ..Default::default() };
        {
            let mut r = status.registry.lock().expect("not poisoned");
            status.families.register(&mut r);
            r.register("tenantry_config_reloads", "Config reloads by result", status.reloads.clone());
            r.register("tenantry_config_info", "The active config's version (1 = active)", status.config_info.clone());
            r.register(
                "tenantry_namespace_cleanup_deleted_keys",
                "Keys of old namespace generations deleted",
                status.cleanup_deleted.clone(),
            );
        }
        status.activate(version);
        status
    }

    /// Records `version` as the active config.
    pub fn activate(&self, version: &str) {
        let mut inner = self.inner.lock().expect("not poisoned");
        if !inner.version.is_empty() {
            self.config_info.get_or_create(&VersionLabel { version: inner.version.clone() }).set(0);
        }
        self.config_info.get_or_create(&VersionLabel { version: version.to_string() }).set(1);
        inner.version = version.to_string();
        inner.loaded_at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_secs());
        inner.last_error = None;
    }

    pub fn version(&self) -> String {
        self.inner.lock().expect("not poisoned").version.clone()
    }

    pub fn reload_failed(&self, error: String) {
        self.reloads.get_or_create(&ResultLabel { result: "error" }).inc();
        self.inner.lock().expect("not poisoned").last_error = Some(error);
    }

    pub fn reload_ok(&self) {
        self.reloads.get_or_create(&ResultLabel { result: "ok" }).inc();
    }

    pub fn set_needs_restart(&self, what: Vec<String>) {
        self.inner.lock().expect("not poisoned").needs_restart = what;
    }

    /// Registers a cleanup; returns its index for `update_cleanup`.
    pub fn add_cleanup(&self, progress: CleanupProgress) -> usize {
        let mut inner = self.inner.lock().expect("not poisoned");
        inner.cleanups.push(progress);
        inner.cleanups.len() - 1
    }

    pub fn update_cleanup(&self, index: usize, update: impl FnOnce(&mut CleanupProgress)) {
        let mut inner = self.inner.lock().expect("not poisoned");
        if let Some(c) = inner.cleanups.get_mut(index) {
            update(c);
        }
    }

    pub fn cleanups(&self) -> Vec<CleanupProgress> {
        self.inner.lock().expect("not poisoned").cleanups.clone()
    }

    /// `/config` as JSON: version, load time, last reload error, settings
    /// that wait for a restart, cleanups.
    pub fn config_json(&self) -> String {
        let inner = self.inner.lock().expect("not poisoned").clone();
        serde_json::to_string_pretty(&inner).unwrap_or_default() + "\n"
    }

    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("not poisoned");
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
