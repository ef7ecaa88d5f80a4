//! TLS on both sides, with rustls: towards backends (`BackendConnector`)
//! and for clients (`ListenerAcceptor`), each re-reading its files when they
//! change.

mod client;
mod files;
mod reloadable;
mod server;

pub use client::{BackendConnector, TlsConnectError};
pub use files::TlsError;
pub use server::{identities, ListenerAcceptor};

/// Loads every TLS file `config` names and builds what start and reload
/// would build from them (nothing is kept or watched): for `tenantry check`,
/// and to refuse a start or a reload whose files cannot be used.
pub fn check(config: &tenantry_config::Config) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    for l in &config.listen {
        if let Some(Err(e)) = l.tls.as_ref().map(server::build) {
            errors.push(format!("listen {}: tls: {e}", l.addr));
        }
    }
    for (name, b) in &config.backends {
        if let Some(Err(e)) = b.tls.as_ref().map(client::build) {
            errors.push(format!("backends.{name}.tls: {e}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// rustls's errors say what was wrong with the certificate in words an
/// operator can act on ("invalid peer certificate: UnknownIssuer").
pub(crate) fn describe(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    }
}
