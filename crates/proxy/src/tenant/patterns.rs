//! The Pub/Sub patterns a tenant's clients subscribe to through this proxy.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// Each tenant's patterns subscribed through this proxy, with how many
/// subscriptions hold each: PUBSUB NUMPAT for the tenant alone (Redis's
/// counts every tenant's).
#[derive(Debug, Default)]
pub struct Patterns(Mutex<HashMap<Bytes, usize>>);

impl Patterns {
    pub fn count(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    pub(crate) fn add(&self, pattern: &Bytes) {
        *self.0.lock().expect("not poisoned").entry(pattern.clone()).or_default() += 1;
    }

    pub(crate) fn remove(&self, pattern: &Bytes) {
        let mut map = self.0.lock().expect("not poisoned");
        if let Some(n) = map.get_mut(pattern) {
            *n -= 1;
            if *n == 0 {
                map.remove(pattern);
            }
        }
    }
}
