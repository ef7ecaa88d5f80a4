//! A tenant's `notify-keyspace-events` (Redis's default: none). Redis keeps
//! the setting server-wide, so a `CONFIG SET` on one connection holds for
//! every other; through tenantry a tenant's connections are spread over its
//! proxies (one per pod), so the flags live on the backend, in
//! `tenantry:events:<namespace>`, and each proxy keeps a copy it reads again
//! when it is older than `FRESH`: a change made through another proxy is
//! seen here within that time.

use super::TenantRt;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tenantry_protocol::events::Flags;
use tenantry_protocol::{answer, Namespace};

pub const FRESH: Duration = Duration::from_secs(2);

/// The key on the backend holding a namespace's flags, in Redis's
/// `notify-keyspace-events` form.
pub fn events_key(namespace: &Namespace) -> Vec<u8> {
    super::own_key("events", namespace)
}

/// This proxy's copy of the tenant's flags; kept across reloads.
#[derive(Debug, Default)]
pub struct EventFlags {
    bits: AtomicU16,
    /// When the copy was last read from (or written to) the backend, in ms
    /// since the tenants' epoch, plus one (0: never). An atomic, not a lock: every
    /// keyspace event delivered looks at it.
    checked: AtomicU64,
    reading: AtomicBool,
}

fn now_ms() -> u64 {
    super::epoch().elapsed().as_millis() as u64 + 1
}

impl EventFlags {
    pub fn get(&self) -> Flags {
        Flags::from_bits(self.bits.load(Ordering::Relaxed))
    }

    /// What the backend holds, just read or written.
    pub fn set(&self, flags: Flags) {
        self.bits.store(flags.bits(), Ordering::Relaxed);
        self.checked.store(now_ms(), Ordering::Relaxed);
    }

    /// True when the copy is stale and nobody is reading it yet: the caller
    /// reads it (and calls `done_reading`).
    fn claim_read(&self) -> bool {
        self.claim_read_at(now_ms())
    }

    fn claim_read_at(&self, now_ms: u64) -> bool {
        let checked = self.checked.load(Ordering::Relaxed);
        let stale = checked == 0 || now_ms.saturating_sub(checked) >= FRESH.as_millis() as u64;
        stale && !self.reading.swap(true, Ordering::AcqRel)
    }

    fn done_reading(&self) {
        self.reading.store(false, Ordering::Release);
    }
}

impl TenantRt {
    /// The tenant's flags as this proxy knows them; a stale copy is read
    /// again in the background (the answer comes with the next call).
    pub fn event_flags(self: &Arc<Self>) -> Flags {
        if self.events.claim_read() {
            let tenant = self.clone();
            tokio::spawn(async move {
                tenant.read_event_flags().await;
            });
        }
        self.events.get()
    }

    /// Reads the tenant's flags from the backend now (CONFIG GET).
    pub async fn read_event_flags(&self) -> Flags {
        let key = events_key(&self.namespace);
        let node = self.shared.node_of_own_key(&key);
        let reply = node.call(&[b"GET", &key]).await.map_err(crate::error::Error::from);
        match reply.and_then(|r| answer::text(&r).map_err(crate::error::Error::from)) {
            Ok(value) => self.events.set(value.as_deref().and_then(Flags::parse).unwrap_or_default()),
            Err(e) => tracing::debug!(tenant = %self.id, error = %e, "could not read keyspace-event flags"),
        }
        self.events.done_reading();
        self.events.get()
    }

    /// Writes the tenant's flags where its other proxies read them.
    pub async fn write_event_flags(&self, flags: Flags) -> Result<(), crate::error::Error> {
        let key = events_key(&self.namespace);
        let node = self.shared.node_of_own_key(&key);
        let reply = node.call(&[b"SET", &key, flags.to_config().as_bytes()]).await?;
        answer::text(&reply).map_err(|e| crate::error::Error::from(e).context("storing notify-keyspace-events"))?;
        self.events.set(flags);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_read_once_while_stale() {
        let flags = EventFlags::default();
        assert!(flags.claim_read(), "never read: stale");
        assert!(!flags.claim_read(), "already being read");
        flags.set(Flags::parse(b"KEA").unwrap_or_default());
        flags.done_reading();
        assert!(!flags.claim_read(), "fresh");
        let set_at = flags.checked.load(Ordering::Relaxed);
        let fresh = FRESH.as_millis() as u64;
        assert!(!flags.claim_read_at(set_at + fresh - 1), "still fresh");
        assert!(flags.claim_read_at(set_at + fresh), "stale again");
    }

    #[test]
    fn the_key_names_the_namespace() {
        let ns = Namespace::new("app:v1:").unwrap();
        assert_eq!(events_key(&ns), b"tenantry:events:app:v1:".to_vec());
    }
}
