//! TLS for the SSL and SASL_SSL listeners: a rustls server config from the PEM files in `tls.*`,
//! reloaded when they change (a rotated Kubernetes Secret; checked at most every
//! [`RELOAD_CHECK`] on a handshake), optional client certificates verified against
//! `tls.ca_file`, and the principal of a client certificate (Kafka's default: `User:` + the
//! subject's distinguished name, RFC 2253 order).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// How often a handshake may look at the certificate files' modification times.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Loads the certificate chain and key into a signing [`CertifiedKey`].
fn load_certified_key(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    use anyhow::Context;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("reading tls.cert_file {}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing tls.cert_file {}", cert_file.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "tls.cert_file {} holds no certificate",
        cert_file.display()
    );
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading tls.key_file {}", key_file.display()))?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let certified = CertifiedKey::from_der(certs, key, &provider)
        .context("tls.cert_file and tls.key_file do not make a usable certificate")?;
    Ok(Arc::new(certified))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The server certificate, reloaded when its files change; a reload that fails keeps the
/// previous certificate (and is logged).
#[derive(Debug)]
struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    state: Mutex<CertState>,
}

#[derive(Debug)]
struct CertState {
    current: Arc<CertifiedKey>,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut state = self.state.lock();
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = Instant::now();
            let stamps = (modified(&self.cert_file), modified(&self.key_file));
            if stamps != state.stamps {
                match load_certified_key(&self.cert_file, &self.key_file) {
                    Ok(key) => {
                        state.current = key;
                        state.stamps = stamps;
                        tracing::info!(cert_file = %self.cert_file.display(), "tls certificate reloaded");
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        "tls certificate files changed but cannot be loaded, keeping the previous one"
                    ),
                }
            }
        }
        Some(state.current.clone())
    }
}

/// Builds the acceptor of every TLS listener.
pub fn acceptor(config: &TlsConfig) -> anyhow::Result<TlsAcceptor> {
    use anyhow::Context;
    let cert_file = config.cert_file.as_ref().context("tls.cert_file is not set")?;
    let key_file = config.key_file.as_ref().context("tls.key_file is not set")?;
    let resolver = ReloadingCert {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        state: Mutex::new(CertState {
            current: load_certified_key(cert_file, key_file)?,
            stamps: (modified(cert_file), modified(key_file)),
            checked: Instant::now(),
        }),
    };
    let builder = rustls::ServerConfig::builder();
    let builder = match (config.client_auth.as_str(), &config.ca_file) {
        ("requested" | "required", Some(ca_file)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca_file)
                .with_context(|| format!("reading tls.ca_file {}", ca_file.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("parsing tls.ca_file {}", ca_file.display()))?)
                    .context("adding a tls.ca_file certificate")?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots));
            let verifier = if config.client_auth == "requested" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().context("building the client verifier")?)
        }
        _ => builder.with_no_client_auth(),
    };
    let server = builder.with_cert_resolver(Arc::new(resolver));
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// `User:<subject DN>` of a verified client certificate, as Kafka's default principal builder
/// makes it (`CN=alice,OU=eng,O=acme`), or None if the subject cannot be read.
pub fn principal(cert: &CertificateDer<'_>) -> Option<String> {
    subject_dn(cert.as_ref()).map(|dn| format!("User:{dn}"))
}

/// One DER element: (tag, contents, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn subject_dn(cert: &[u8]) -> Option<String> {
    let (_, certificate, _) = der(cert)?;
    let (_, tbs, _) = der(certificate)?;
    let mut rest = tbs;
    // [0] version is optional.
    if rest.first() == Some(&0xa0) {
        rest = der(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = der(rest)?.2;
    }
    let (_, mut name, _) = der(rest)?;
    let mut parts = Vec::new();
    while !name.is_empty() {
        let (_, set, next) = der(name)?;
        name = next;
        let mut set = set;
        while !set.is_empty() {
            let (_, atv, next) = der(set)?;
            set = next;
            let (_, oid, value) = der(atv)?;
            let (_, value, _) = der(value)?;
            let key = match oid {
                [0x55, 0x04, 0x03] => "CN".to_string(),
                [0x55, 0x04, 0x06] => "C".to_string(),
                [0x55, 0x04, 0x07] => "L".to_string(),
                [0x55, 0x04, 0x08] => "ST".to_string(),
                [0x55, 0x04, 0x0a] => "O".to_string(),
                [0x55, 0x04, 0x0b] => "OU".to_string(),
                other => other.iter().map(|b| format!("{b:02x}")).collect(),
            };
            let value = String::from_utf8_lossy(value)
                .replace('\\', "\\\\")
                .replace(',', "\\,")
                .replace('+', "\\+");
            parts.push(format!("{key}={value}"));
        }
    }
    // RFC 2253 writes the most specific component first: the reverse of the DER order.
    parts.reverse();
    Some(parts.join(","))
}
