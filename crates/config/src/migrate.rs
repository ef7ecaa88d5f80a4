//! `tenants.<id>.migrate`: checked alone (a target that exists and is not
//! the tenant's backend, a valid namespace), then against every tenant (the
//! namespace it lands in must be no other tenant's on the target).

use crate::model::{BackendName, Migrate, Tenant, TenantId};
use crate::raw::{RawConfig, RawMigrate, RawTenant};
use crate::validate::{Checker, RESERVED_PREFIX};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use tenantry_protocol::Namespace;

/// The tenant's `migrate:` as written, checked on its own.
pub(crate) fn migrate(c: &mut Checker, field: &str, raw: &RawConfig, t: &RawTenant) -> Option<Migrate> {
    let m: &Spanned<RawMigrate> = t.migrate.as_ref()?;
    let r = &m.value;
    let field = format!("{field}.migrate");
    let to = BackendName::new(&r.to.value);
    if !raw.backends.contains_key(r.to.value.as_str()) {
        c.error(r.to.referenced, &format!("{field}.to"), format!("no backend named {:?}", r.to.value));
    } else if r.to.value == t.backend.value {
        c.error(
            r.to.referenced,
            &format!("{field}.to"),
            format!("{:?} is the tenant's current backend: name another one", r.to.value),
        );
    }
    let namespace = match &r.namespace {
        None => None,
        Some(ns) => match Namespace::new(&ns.value) {
            Ok(n) => Some(n),
            Err(e) => {
                c.error(ns.referenced, &format!("{field}.namespace"), format!("{:?} {e}", ns.value));
                None
            }
        },
    };
    let keys_per_sec =
        c.count(&r.keys_per_sec, &format!("{field}.keys_per_sec"), Migrate::DEFAULT_KEYS_PER_SEC as usize);
    let verify_sample = match &r.verify_sample {
        None => Migrate::DEFAULT_VERIFY_SAMPLE,
        Some(n) => n.value as usize,
    };
    Some(Migrate {
        to,
        namespace,
        keys_per_sec: keys_per_sec.min(u32::MAX as usize) as u32,
        verify_sample,
        keep_old: r.keep_old.unwrap_or(false),
    })
}

/// The namespace each migrating tenant lands in must be no other tenant's
/// on the target backend, now or after that one's own migration, nor
/// tenantry's own.
pub(crate) fn check_targets(c: &mut Checker, raw: &RawConfig, tenants: &BTreeMap<TenantId, Tenant>) {
    let reserved = Namespace::new(RESERVED_PREFIX).expect("valid");
    for (id, t) in tenants {
        let Some((to, ns)) = t.migration_target() else { continue };
        let Some(m) = raw.tenants.get(id.as_str()).and_then(|r| r.value.migrate.as_ref()) else { continue };
        let at = m.value.namespace.as_ref().map_or(m.value.to.referenced, |n| n.referenced);
        let field = format!("tenants.{id}.migrate.namespace");
        if ns.overlaps(&reserved) {
            c.error(
                at,
                &field,
                format!("{:?} overlaps {RESERVED_PREFIX:?}, where tenantry keeps its own keys", ns.to_string()),
            );
        }
        for (other_id, other) in tenants.iter().filter(|(o, _)| *o != id) {
            let places = [Some((&other.backend, &other.namespace)), other.migration_target()];
            for (backend, other_ns) in places.into_iter().flatten() {
                if backend == to && other_ns.overlaps(ns) {
                    c.error(
                        at,
                        &field,
                        format!(
                            "{:?} on backend {to} overlaps tenant {other_id}'s {:?}: one could read the other's keys",
                            ns.to_string(),
                            other_ns.to_string()
                        ),
                    );
                    break;
                }
            }
        }
    }
}
