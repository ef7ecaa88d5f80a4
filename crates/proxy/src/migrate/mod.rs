//! Online tenant migration (`tenants.x.migrate`): a tenant's keys move to
//! another backend (or namespace) while it is served, and every proxy of
//! the fleet switches over at one barrier. The shared state is
//! `crate::tenant::migration`; these are the tasks that move it.
//!
//! Every write runs on the old backend, and once answered its keys are
//! marked in a dirty set there (`marker.rs`). One proxy, holding a lease,
//! copies every key with DUMP/PTTL → RESTORE ABSTTL REPLACE and copies the
//! dirty keys again (`driver.rs`, `copy.rs`), then compares a sample
//! (`verify.rs`); at the cut-over each proxy holds the tenant's new
//! requests, waits until none of its writes is unmarked, and says so
//! (`follower.rs`); the last dirty keys are copied, and every proxy serves
//! the tenant from the new backend (`supervise.rs` rebuilds the runtime).
//! The state lives on the old backend, so a restarted proxy resumes where
//! the fleet is.

mod copy;
mod dirty;
mod driver;
mod follower;
mod marker;
mod supervise;
mod target;
mod verify;

pub(crate) use supervise::supervise;

/// Marks a write's keys dirty now, for the paths whose write is not in a
/// batch of the client's (split over nodes, blocking): awaited before the
/// client's reply, so no write is acknowledged without its mark.
pub(crate) async fn mark_now(mark: &crate::tenant::migration::WriteMark) {
    if mark.keys().is_empty() {
        return;
    }
    if let Err(e) = dirty::add(mark.job(), mark.keys().to_vec()).await {
        tracing::warn!(tenant = %mark.job().tenant, error = %e, "cannot mark written keys; marking again");
        mark.job().remark(mark.keys().to_vec());
    }
}
