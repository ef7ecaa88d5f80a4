//! TLS on both sides, with rustls: towards backends (`BackendConnector`)
//! and for clients (`ListenerAcceptor`), each re-reading its files when they
//! change.

mod client;
mod files;
mod reloadable;
mod server;

pub use client::BackendConnector;
pub use files::TlsError;
pub use server::{identities, ListenerAcceptor};

/// Loads every TLS file `config` names, as start and reload would: for
/// `tenantry check`, and to refuse a reload whose files cannot be used.
pub fn check(config: &tenantry_config::Config) -> Vec<String> {
    let mut errors = Vec::new();
    for l in &config.listen {
        if let Some(tls) = &l.tls {
            if let Err(e) = ListenerAcceptor::new(l.addr, tls) {
                errors.push(format!("listen {}: tls: {e}", l.addr));
            }
        }
    }
    for (name, b) in &config.backends {
        if let Some(tls) = &b.tls {
            if let Err(e) = BackendConnector::new(name, tls) {
                errors.push(format!("backends.{name}.tls: {e}"));
            }
        }
    }
    errors
}
