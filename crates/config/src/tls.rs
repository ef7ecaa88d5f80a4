//! TLS settings: listeners that serve TLS (optionally requiring client
//! certificates, which may choose a tenant), and backends reached over TLS.
//! Files are named here and checked readable; the proxy parses them, and
//! re-reads them when they change.

use crate::raw::{RawBackendTls, RawListener, RawListenerTls};
use crate::validate::Checker;
use serde_saphyr::{Location, Spanned};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub tls: Option<ListenerTls>,
}

impl Listener {
    pub fn plain(addr: SocketAddr) -> Self {
        Listener { addr, tls: None }
    }
}

/// A certificate chain and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenerTls {
    pub cert: CertFiles,
    /// Client certificates are required, and must chain to these CAs.
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendTls {
    /// `None`: the system's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// The name the nodes' certificates are checked against (and sent as
    /// SNI); `None`: each node's host as configured or announced.
    pub server_name: Option<String>,
    /// A client certificate for backends that require one.
    pub client_cert: Option<CertFiles>,
    /// Accepts any server certificate. For tests and emergencies only.
    pub insecure_skip_verify: bool,
}

/// How a client certificate names a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CertIdentity {
    /// A URI (e.g. `spiffe://...`) or DNS subject alternative name.
    San(String),
    /// The subject's common name.
    CommonName(String),
}

impl std::fmt::Display for CertIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertIdentity::San(s) => write!(f, "SAN {s}"),
            CertIdentity::CommonName(s) => write!(f, "CN {s}"),
        }
    }
}

impl Checker<'_> {
    /// A file the config names, relative to the config's directory, that must be readable.
    fn tls_file(&mut self, raw: &str, at: Location, field: &str) -> PathBuf {
        let path = self.path(raw);
        if let Err(e) = std::fs::metadata(&path).and_then(|m| {
            if m.is_file() {
                Ok(())
            } else {
                Err(std::io::Error::other("not a file"))
            }
        }) {
            self.error(at, field, format!("cannot read {}: {e}", path.display()));
        }
        path
    }

    pub(crate) fn listener(&mut self, raw: &RawListener, at: Location, field: &str) -> Option<Listener> {
        let (addr, tls) = match raw {
            RawListener::Plain(a) => (a, None),
            RawListener::Full(f) => (&f.addr, f.tls.as_ref()),
        };
        let addr = self.addr(&Spanned::new(addr.clone(), at, at), field)?;
        let tls = tls.map(|t| self.listener_tls(t, at, &format!("{field}.tls")));
        Some(Listener { addr, tls })
    }

    fn listener_tls(&mut self, raw: &RawListenerTls, at: Location, field: &str) -> ListenerTls {
        ListenerTls {
            cert: CertFiles {
                cert_file: self.tls_file(&raw.cert_file, at, &format!("{field}.cert_file")),
                key_file: self.tls_file(&raw.key_file, at, &format!("{field}.key_file")),
            },
            client_ca_file: raw
                .client_ca_file
                .as_ref()
                .map(|f| self.tls_file(f, at, &format!("{field}.client_ca_file"))),
        }
    }

    pub(crate) fn backend_tls(&mut self, raw: &Spanned<RawBackendTls>, field: &str) -> BackendTls {
        let (t, at) = (&raw.value, raw.referenced);
        let file = |c: &mut Self, f: &Option<Spanned<String>>, name: &str| {
            f.as_ref().map(|f| c.tls_file(&f.value, f.referenced, &format!("{field}.{name}")))
        };
        let ca_file = file(self, &t.ca_file, "ca_file");
        let cert_file = file(self, &t.cert_file, "cert_file");
        let key_file = file(self, &t.key_file, "key_file");
        let client_cert = match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => Some(CertFiles { cert_file, key_file }),
            (None, None) => None,
            _ => {
                self.error(at, field, "cert_file and key_file go together");
                None
            }
        };
        let server_name = t.server_name.as_ref().and_then(|n| {
            if rustls_name_ok(&n.value) {
                Some(n.value.clone())
            } else {
                self.error(
                    n.referenced,
                    &format!("{field}.server_name"),
                    format!("{:?} is not a DNS name or IP address", n.value),
                );
                None
            }
        });
        let insecure_skip_verify = t.insecure_skip_verify.unwrap_or(false);
        if insecure_skip_verify && (ca_file.is_some() || server_name.is_some()) {
            self.error(
                at,
                &format!("{field}.insecure_skip_verify"),
                "verification is off: ca_file and server_name would not be used",
            );
        }
        BackendTls { ca_file, server_name, client_cert, insecure_skip_verify }
    }

    /// `tls_san` or `tls_cn` of a tenant's `auth`.
    pub(crate) fn cert_identity(
        &mut self,
        san: &Option<Spanned<String>>,
        cn: &Option<Spanned<String>>,
        at: Location,
        field: &str,
    ) -> Option<CertIdentity> {
        match (san, cn) {
            (Some(_), Some(_)) => {
                self.error(at, field, "give one of tls_san, tls_cn");
                None
            }
            (Some(s), None) if !s.value.is_empty() => Some(CertIdentity::San(s.value.clone())),
            (None, Some(c)) if !c.value.is_empty() => Some(CertIdentity::CommonName(c.value.clone())),
            (None, None) => None,
            (Some(s), _) | (_, Some(s)) => {
                self.error(s.referenced, field, "a certificate identity cannot be empty");
                None
            }
        }
    }
}

/// A name a TLS client can send as SNI and check a certificate against.
fn rustls_name_ok(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
        })
}
