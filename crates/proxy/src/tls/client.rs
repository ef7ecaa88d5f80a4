//! TLS towards backends: a connector per backend, with the CA, client
//! certificate and server name of its config, re-read when the files change.

use super::files::{self, TlsError};
use super::reloadable::Reloadable;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use tenantry_config::{BackendName, BackendTls};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Why a TLS session with a backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsConnectError {
    #[error("{0:?} is not a name a TLS certificate can be checked against")]
    BadName(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
}

#[derive(Debug)]
pub struct BackendConnector {
    settings: BackendTls,
    config: Arc<Reloadable<ClientConfig>>,
}

impl std::fmt::Debug for Reloadable<ClientConfig> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reloadable<ClientConfig>")
    }
}

impl BackendConnector {
    pub fn new(backend: &BackendName, settings: &BackendTls) -> Result<Self, TlsError> {
        if settings.insecure_skip_verify {
            tracing::warn!(%backend, "tls.insecure_skip_verify: backend certificates are NOT verified; anyone on the path can read and change this traffic");
        }
        let paths =
            settings.ca_file.iter().chain(settings.client_cert.iter().flat_map(|c| [&c.cert_file, &c.key_file]));
        let built = settings.clone();
        let config = Reloadable::new(format!("backend {backend}"), paths.cloned().collect(), move || build(&built))?;
        Ok(BackendConnector { settings: settings.clone(), config })
    }

    /// The TLS handshake over `tcp` to a node whose configured or announced
    /// host is `host`; the certificate is checked against the configured
    /// `server_name`, else that host.
    pub async fn connect(&self, tcp: TcpStream, host: &str) -> Result<TlsStream<TcpStream>, TlsConnectError> {
        let name = self.settings.server_name.as_deref().unwrap_or(host);
        let server_name =
            ServerName::try_from(name.to_string()).map_err(|_| TlsConnectError::BadName(name.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(self.config.current());
        connector.connect(server_name, tcp).await.map_err(|e| TlsConnectError::Handshake(super::describe(&e)))
    }
}

pub(super) fn build(settings: &BackendTls) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = if settings.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
    } else {
        let roots = match &settings.ca_file {
            Some(ca) => files::roots(ca)?,
            None => files::system_roots()?,
        };
        builder.with_root_certificates(roots)
    };
    Ok(match &settings.client_cert {
        Some(c) => builder.with_client_auth_cert(files::certs(&c.cert_file)?, files::key(&c.key_file)?)?,
        None => builder.with_no_client_auth(),
    })
}

/// `insecure_skip_verify`: any certificate is taken, but the handshake's
/// signatures are still checked, so the session keys are the peer's.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
