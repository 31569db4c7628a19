//! TLS (`-Z`), configured with memcached's `-o ssl_*` options.
//!
//! Every TCP connection is TLS when it is on; unix sockets stay plain, as in
//! memcached. rustls with the ring provider does the work.
//!
//! The certificate, key and CA files are read again on SIGHUP and on the
//! `refresh_certs` command (memcached 1.6.40+): new connections get the
//! new ones, open connections keep theirs, and a reload that fails keeps
//! the old ones and says why in memcached's words.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
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

/// TLS as configured, with the acceptor built from the files; clones
/// share it, so a reload reaches every listener.
#[derive(Clone)]
pub struct Tls {
    pub options: TlsOptions,
    current: Arc<RwLock<Loaded>>,
}

/// The acceptor of the last successful load.
struct Loaded {
    acceptor: TlsAcceptor,
    /// When the certificate was read (`time_since_server_cert_refresh`).
    at: Instant,
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
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(certs)
}

impl Tls {
    /// Reads the certificate, key and CA files and builds the server side.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, or options that do not fit.
    pub fn new(options: TlsOptions) -> Result<Self, String> {
        let acceptor = acceptor(&options)?;
        Ok(Tls {
            options,
            current: Arc::new(RwLock::new(Loaded {
                acceptor,
                at: Instant::now(),
            })),
        })
    }

    /// The acceptor for a new connection: the last one loaded.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .expect("tls lock poisoned")
            .acceptor
            .clone()
    }

    /// When the files in use were read.
    pub fn loaded(&self) -> Instant {
        self.current.read().expect("tls lock poisoned").at
    }

    /// Reads the files again; new connections use them from now on.
    ///
    /// # Errors
    /// memcached's message for what failed; the files in use stay.
    pub fn reload(&self) -> Result<(), String> {
        let acceptor = acceptor(&self.options)?;
        *self.current.write().expect("tls lock poisoned") = Loaded {
            acceptor,
            at: Instant::now(),
        };
        Ok(())
    }
}

/// Builds the server side from the files `options` names. Errors read as
/// memcached's `refresh_certs` words them.
fn acceptor(options: &TlsOptions) -> Result<TlsAcceptor, String> {
    let Some(chain_path) = &options.chain_cert else {
        return Err("-Z needs a certificate: -o ssl_chain_cert=PATH".into());
    };
    let chain = certs(chain_path).map_err(|e| {
        format!(
            "Error loading the certificate chain: {} : {e}",
            chain_path.display()
        )
    })?;
    // As in memcached, the key may be in the chain file.
    let key_path = options.key.as_ref().unwrap_or(chain_path);
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("Error loading the key: {} : {e}", key_path.display()))?;
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
            let bad_ca =
                |e: String| format!("Error loading the CA certificate: {} : {e}", ca.display());
            let mut roots = RootCertStore::empty();
            for cert in certs(ca).map_err(bad_ca)? {
                roots.add(cert).map_err(|e| bad_ca(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
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
        .map_err(|e| format!("Error validating the certificate: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
