//! TLS for clients: a listener's acceptor, with its certificate and (if
//! client certificates are required) the CAs they must chain to, re-read
//! when the files change; and the identities a client certificate names.

use super::files::{self, TlsError};
use super::reloadable::Reloadable;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use tenantry_config::{CertIdentity, ListenerTls};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub struct ListenerAcceptor {
    config: Arc<Reloadable<ServerConfig>>,
}

impl ListenerAcceptor {
    pub fn new(addr: SocketAddr, settings: &ListenerTls) -> Result<Self, TlsError> {
        let mut paths = vec![settings.cert.cert_file.clone(), settings.cert.key_file.clone()];
        paths.extend(settings.client_ca_file.clone());
        let built = settings.clone();
        let config = Reloadable::new(format!("listener {addr}"), paths, move || build(&built))?;
        Ok(ListenerAcceptor { config })
    }

    /// The handshake; its error reads best through `tls::describe`.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        tokio_rustls::TlsAcceptor::from(self.config.current()).accept(tcp).await
    }
}

pub(super) fn build(settings: &ListenerTls) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match &settings.client_ca_file {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(files::roots(ca)?), provider).build()?,
        ),
        None => builder.with_no_client_auth(),
    };
    Ok(builder.with_single_cert(files::certs(&settings.cert.cert_file)?, files::key(&settings.cert.key_file)?)?)
}

/// What a verified client certificate says its holder is: its URI and DNS
/// subject alternative names, then its subject's common names.
pub fn identities(tls: &TlsStream<TcpStream>) -> Vec<CertIdentity> {
    let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else { return Vec::new() };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert) else { return Vec::new() };
    let mut found = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::URI(u) => found.push(CertIdentity::San(u.to_string())),
                x509_parser::extensions::GeneralName::DNSName(d) => found.push(CertIdentity::San(d.to_string())),
                _ => {}
            }
        }
    }
    found.extend(
        cert.subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(|cn| CertIdentity::CommonName(cn.to_string())),
    );
    found
}
