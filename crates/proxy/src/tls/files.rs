//! PEM files to rustls types, and a fingerprint of what was read, so a
//! rotation is noticed by content (Kubernetes swaps secret volumes through
//! symlinks; modification times say little).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("no usable root certificate in the system's store")]
    NoSystemRoots,
}

fn pem_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem { path: path.to_path_buf(), reason: e.to_string() }
}

pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs =
        CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>().map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no certificate (PEM \"BEGIN CERTIFICATE\") in the file"));
    }
    Ok(certs)
}

pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| pem_error(path, e))
}

/// The CAs of a PEM bundle, each checked.
pub fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(path)? {
        store.add(cert).map_err(|e| pem_error(path, e))?;
    }
    Ok(store)
}

/// The system's trusted roots, as rustls-native-certs finds them.
pub fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "a system root certificate could not be read");
    }
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::NoSystemRoots);
    }
    Ok(store)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File { path: path.to_path_buf(), reason: e.to_string() })
}

/// The SHA-256 of the files' contents, in order (a missing file counts as empty).
pub fn fingerprint<'a>(paths: impl IntoIterator<Item = &'a Path>) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in paths {
        let bytes = std::fs::read(p).unwrap_or_default();
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    h.finalize().into()
}
