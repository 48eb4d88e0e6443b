//! HTTPS on the API's listener (`--tls-cert-file`, `--tls-key-file`):
//! rustls with the `ring` provider (the one the PostgreSQL side uses), the
//! certificate read from PEM files and read again when they change, so a
//! renewed certificate (certbot, cert-manager, a cron job) is served
//! without a restart.
//!
//! The check is made at each handshake: the two files' size, modification
//! time and inode are compared with those of the pair in use (two `stat`
//! calls, cheap beside the handshake itself). A changed pair is read and
//! checked (the key must fit the certificate); a pair that fails, such as a
//! certificate written before its key, keeps the previous one in service
//! and is tried again at the next change.
//!
//! A client that speaks plain HTTP to the TLS port gets `400` in plain text
//! and the connection is closed (as Go's server does): the first byte of a
//! TLS connection is a handshake record (0x16), an HTTP request's a letter.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The most a certificate chain or key file may hold.
pub const MAX_PEM_FILE_BYTES: u64 = 1 << 20;

/// The TLS record type of a handshake: the first byte of every TLS client.
const HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain HTTP client on the TLS port is told before the close.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 48\r\n\r\nThis port speaks HTTPS: use https:// to call it\n";

/// The certificate chain and key files of `--tls-cert-file` / `--tls-key-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate first, then its intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the certificate or key cannot be served. Never holds the key's bytes.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    /// A file could not be read (missing, too large, not a regular file).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::secret::SmallFileError,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no PEM private key rustls can read.
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is of a kind rustls cannot sign with, or does not fit the
    /// certificate.
    #[error("the key in {} cannot serve the certificate in {}: {source}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// A file's identity for change detection: size, modification time, inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Option<(u64, SystemTime, u64)>);

impl Stamp {
    fn of(path: &Path) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp(
            std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?, m.ino()))),
        )
    }
}

/// The pair in service and the stamps it was read at (or last tried at).
#[derive(Debug)]
struct Loaded {
    stamps: (Stamp, Stamp),
    key: Arc<CertifiedKey>,
}

/// A [`ResolvesServerCert`] that serves the files' current pair.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    loaded: RwLock<Loaded>,
}

/// The provider every TLS server config of cpi uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks the pair of `files`.
pub fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, HttpsError> {
    let read = |path: &Path| {
        crate::secret::read_small_file(path, MAX_PEM_FILE_BYTES).map_err(|source| {
            HttpsError::Read {
                path: path.to_path_buf(),
                source,
            }
        })
    };
    let cert_pem = read(&files.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(HttpsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key_pem = crate::secret::Secret::new(read(&files.key)?);
    let key = PrivateKeyDer::from_pem_slice(key_pem.expose().as_bytes()).map_err(|_| {
        HttpsError::NoKey {
            path: files.key.clone(),
        }
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| HttpsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })
}

impl ReloadingCert {
    /// Reads the pair now: a bad pair at start is an error, not a warning.
    pub fn new(files: TlsFiles) -> Result<ReloadingCert, HttpsError> {
        let provider = provider();
        let stamps = (Stamp::of(&files.cert), Stamp::of(&files.key));
        let key = Arc::new(load(&files, &provider)?);
        Ok(ReloadingCert {
            files,
            provider,
            loaded: RwLock::new(Loaded { stamps, key }),
        })
    }

    /// The pair to serve: the files' own when they changed and read well,
    /// otherwise the one in service.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let stamps = (Stamp::of(&self.files.cert), Stamp::of(&self.files.key));
        {
            let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
            if loaded.stamps == stamps {
                return loaded.key.clone();
            }
        }
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        if loaded.stamps != stamps {
            // Tried once per change, whether it reads well or not.
            loaded.stamps = stamps;
            match load(&self.files, &self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    loaded.key = Arc::new(key);
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "TLS certificate files changed but cannot be served; the previous certificate stays in service"
                ),
            }
        }
        loaded.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The acceptor for `files`: TLS 1.2 and 1.3, no client certificates,
/// ALPN `http/1.1` (the server speaks nothing else).
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, HttpsError> {
    let resolver = ReloadingCert::new(files.clone())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(HttpsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS side of an accepted connection, within `timeout` (the header
/// timeout: a client that stalls the handshake is closed like one that
/// stalls its headers). `None`: closed, after a plain-HTTP client was told.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    mut stream: TcpStream,
    timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    let started = tokio::time::Instant::now();
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    if first[0] != HANDSHAKE_RECORD {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(PLAIN_HTTP_ANSWER).await?;
            stream.shutdown().await
        })
        .await;
        return None;
    }
    let left = timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_answer_says_its_length() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn missing_files_are_named_and_garbage_is_no_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let e = ReloadingCert::new(files.clone()).unwrap_err();
        assert!(e.to_string().contains("tls.crt"), "{e}");
        std::fs::write(&files.cert, "not a certificate").unwrap();
        std::fs::write(
            &files.key,
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = ReloadingCert::new(files.clone()).unwrap_err();
        assert!(matches!(e, HttpsError::NoCertificate { .. }), "{e}");
    }
}
