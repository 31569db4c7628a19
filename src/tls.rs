//! TLS (`-Z`), configured with memcached's `-o ssl_*` options.
//!
//! Every TCP connection is TLS when it is on; unix sockets stay plain, as in
//! memcached. rustls with the ring provider does the work.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

/// The `-o ssl_*` settings as given, for `stats settings`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub chain_cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
    /// memcached's 0 none, 1 request, 2 require, 3 once.
    pub verify_mode: u8,
    /// `tlsv1.2` or `tlsv1.3`.
    pub min_version: String,
}

/// TLS as configured, with the acceptor built from it at start-up.
#[derive(Clone)]
pub struct Tls {
    pub options: TlsOptions,
    pub acceptor: TlsAcceptor,
    /// When the certificate was read (`time_since_server_cert_refresh`).
    pub loaded: Instant,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("options", &self.options)
            .finish()
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "Error loading the certificate chain {}: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!("No certificate in {}", path.display()));
    }
    Ok(certs)
}

impl Tls {
    /// Reads the certificate, key and CA files and builds the server side.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, or options that do not fit.
    pub fn new(options: TlsOptions) -> Result<Self, String> {
        let Some(chain_path) = &options.chain_cert else {
            return Err("-Z needs a certificate: -o ssl_chain_cert=PATH".into());
        };
        let chain = certs(chain_path)?;
        // As in memcached, the key may be in the chain file.
        let key_path = options.key.as_ref().unwrap_or(chain_path);
        let key = PrivateKeyDer::from_pem_file(key_path)
            .map_err(|e| format!("Error loading the private key {}: {e}", key_path.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match options.min_version.as_str() {
            "tlsv1.3" => &[&rustls::version::TLS13],
            _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS setup failed: {e}"))?;
        let builder = match (options.verify_mode, &options.ca_cert) {
            (0, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err("ssl_verify_mode other than 0 needs -o ssl_ca_cert=PATH".into());
            }
            (mode, Some(ca)) => {
                let mut roots = RootCertStore::empty();
                for cert in certs(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("Bad CA certificate in {}: {e}", ca.display()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                // 2 fails a client without a certificate; 1 and 3 only ask.
                let verifier = if mode == 2 {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| format!("TLS client verification setup failed: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("The certificate and key do not fit: {e}"))?;
        Ok(Tls {
            options,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            loaded: Instant::now(),
        })
    }
}
