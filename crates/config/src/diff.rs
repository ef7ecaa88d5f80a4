//! What a reload changes: computed once from the old and the new config,
//! and read by everything that acts on a reload (the runtime keeping
//! connections and tenant state, the namespace cleanup, the reload log), so
//! no two of them can disagree on what changed. (What the running process
//! cannot take without a restart, listen and admin addresses, is checked
//! against what it runs on, not against the previous file.)

use crate::model::{BackendName, Config, TenantId};
use std::collections::BTreeMap;
use tenantry_protocol::Namespace;

/// How one tenant or backend differs between two configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Changed,
    Same,
}

/// A tenant that is in both configs, and what moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantMove {
    /// Its namespace before, if the new config gives it another one.
    pub old_namespace: Option<Namespace>,
    /// Its backend before, if the new config routes it elsewhere.
    pub old_backend: Option<BackendName>,
}

impl TenantMove {
    /// Its keys stay where they were, under the same names: state about
    /// them (quota figures) stays true.
    pub fn keys_stay(&self) -> bool {
        self.old_namespace.is_none() && self.old_backend.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDiff {
    pub tenants: BTreeMap<TenantId, Change>,
    pub backends: BTreeMap<BackendName, Change>,
    /// Tenants in both configs whose namespace or backend moved.
    pub moves: BTreeMap<TenantId, TenantMove>,
}

impl ConfigDiff {
    pub fn between(old: &Config, new: &Config) -> Self {
        let tenants = changes(&old.tenants, &new.tenants);
        let backends = changes(&old.backends, &new.backends);
        let mut moves = BTreeMap::new();
        for (id, after) in &new.tenants {
            let Some(before) = old.tenants.get(id) else { continue };
            let m = TenantMove {
                old_namespace: (before.namespace != after.namespace).then(|| before.namespace.clone()),
                old_backend: (before.backend != after.backend).then(|| before.backend.clone()),
            };
            if !m.keys_stay() {
                moves.insert(id.clone(), m);
            }
        }
        ConfigDiff { tenants, backends, moves }
    }

    pub fn backend(&self, name: &BackendName) -> Change {
        self.backends.get(name).copied().unwrap_or(Change::Added)
    }

    /// Whether what tenantry knows of this tenant's keys stays true.
    pub fn keys_stay(&self, id: &TenantId) -> bool {
        !self.moves.contains_key(id)
    }
}

fn changes<K: Ord + Clone, V: PartialEq>(old: &BTreeMap<K, V>, new: &BTreeMap<K, V>) -> BTreeMap<K, Change> {
    let mut out: BTreeMap<K, Change> = new
        .iter()
        .map(|(k, v)| {
            let change = match old.get(k) {
                None => Change::Added,
                Some(o) if o != v => Change::Changed,
                Some(_) => Change::Same,
            };
            (k.clone(), change)
        })
        .collect();
    out.extend(old.keys().filter(|k| !new.contains_key(*k)).map(|k| (k.clone(), Change::Removed)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(tenants: &str) -> Config {
        let text = format!(
            "listen: 127.0.0.1:6379\nbackends:\n  a: {{ kind: standalone, nodes: [\"127.0.0.1:7000\"] }}\n  \
             b: {{ kind: standalone, nodes: [\"127.0.0.1:7001\"] }}\ntenants:\n{tenants}"
        );
        crate::parse(&text, Path::new("t.yaml"), &|_| None).unwrap()
    }

    #[test]
    fn tenants_and_backends_added_removed_changed_and_moved() {
        let old = config("  x: { backend: a, namespace: \"x:v1:\" }\n  y: { backend: a, namespace: \"y:\" }\n  z: { backend: a, namespace: \"z:\" }\n");
        let new = config("  x: { backend: a, namespace: \"x:v2:\" }\n  y: { backend: b, namespace: \"y:\", scripts: true }\n  w: { backend: a, namespace: \"w:\" }\n");
        let d = ConfigDiff::between(&old, &new);
        let t = |id: &str| d.tenants[&TenantId::new(id)];
        assert_eq!(
            (t("x"), t("y"), t("z"), t("w")),
            (Change::Changed, Change::Changed, Change::Removed, Change::Added)
        );
        let x = &d.moves[&TenantId::new("x")];
        assert_eq!(x.old_namespace.as_ref().map(|n| n.to_string()), Some("x:v1:".to_string()));
        assert_eq!(x.old_backend, None);
        assert_eq!(d.moves[&TenantId::new("y")].old_backend, Some(BackendName::new("a")));
        assert!(!d.keys_stay(&TenantId::new("x")) && d.keys_stay(&TenantId::new("w")));
        assert_eq!(d.backend(&BackendName::new("a")), Change::Same);
        let same = ConfigDiff::between(&new, &new);
        assert!(same.tenants.values().chain(same.backends.values()).all(|c| *c == Change::Same));
        assert!(same.moves.is_empty());
    }
}
