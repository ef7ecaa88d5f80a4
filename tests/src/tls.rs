//! Test certificates made on the spot with rcgen (no private key is ever
//! committed): a CA, server certificates for localhost and 127.0.0.1,
//! client certificates naming a SPIFFE ID or a common name, and the broken
//! ones (expired, from another CA) that must be refused.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    pub ca_file: PathBuf,
}

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How a certificate is made.
#[derive(Default)]
pub struct Spec<'a> {
    pub cn: &'a str,
    pub dns: &'a [&'a str],
    pub ip: bool,
    pub uri: Option<&'a str>,
    pub client: bool,
    pub expired: bool,
}

impl Pki {
    pub fn new() -> Self {
        Self::named("tenantry test CA")
    }

    pub fn named(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        Pki { dir, ca, ca_file }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self, name: &str) -> CertFiles {
        self.issue(name, &Spec { cn: name, dns: &["localhost"], ip: true, ..Spec::default() })
    }

    /// A client certificate with `uri` as its SAN (if given) and `cn` as its subject's CN.
    pub fn client(&self, name: &str, cn: &str, uri: Option<&str>) -> CertFiles {
        self.issue(name, &Spec { cn, uri, client: true, ..Spec::default() })
    }

    pub fn issue(&self, name: &str, spec: &Spec<'_>) -> CertFiles {
        let mut params =
            CertificateParams::new(spec.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, spec.cn);
        if spec.ip {
            params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        }
        if let Some(uri) = spec.uri {
            params.subject_alt_names.push(SanType::URI(uri.try_into().expect("uri")));
        }
        // A server's certificate also serves it as a client: Redis Cluster
        // nodes present theirs on the cluster bus, and it is checked.
        params.extended_key_usages = if spec.client {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
        };
        if spec.expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        let files =
            CertFiles { cert: self.dir().join(format!("{name}.crt")), key: self.dir().join(format!("{name}.key")) };
        std::fs::write(&files.cert, cert.pem()).expect("write cert");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

/// rustls's client config trusting `ca` (and presenting `client`, if given).
pub fn client_config(ca: &Path, client: Option<&CertFiles>) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(c.expect("ca cert")).expect("add ca");
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
    match client {
        Some(c) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&c.cert).expect("cert").map(|c| c.expect("cert")).collect(),
                PrivateKeyDer::from_pem_file(&c.key).expect("key"),
            )
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    }
}
