//! TLS to PostgreSQL with libpq's URL parameters and meanings, on sqlx's
//! rustls (no OpenSSL). sqlx parses `sslmode`, `sslrootcert`, `sslcert` and
//! `sslkey` itself; this module adds what it does differently from libpq:
//!
//! - `sslrootcert=system` means the operating system's roots (sqlx would
//!   open a file named `system`), and without an `sslmode` it means
//!   `verify-full`; a weaker mode with it is refused, as libpq 16 does.
//! - `sslmode=require` with an `sslrootcert` file verifies the chain
//!   (`verify-ca`), as libpq does when a root file exists.
//! - An `sslrootcert` file is the only trust anchor (sqlx-core 0.9.0 adds
//!   the system roots; cpi builds `vendor/sqlx-core`, patched not to).
//! - `allow` tries without TLS, then with it; `prefer` (the default) tries
//!   with TLS, then without it (sqlx does one attempt of either).
//! - A missing or unreadable certificate or key file is named before
//!   connecting, and a handshake that fails says which check failed.
//!
//! One function ([`connect_options`]) serves the management pool, import
//! targets and the connection test.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, PgConnection};

use crate::secret::{self, Secret};

/// Where the server's certificate chain is verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// No `sslrootcert`: the operating system's roots.
    Default,
    /// `sslrootcert=system`: the operating system's roots.
    System,
    /// `sslrootcert=FILE`: that file (PEM) alone, as libpq (the vendored
    /// sqlx-core leaves the system roots out when a root file is given).
    File(PathBuf),
}

/// The TLS parameters of a URL, as libpq reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsParams {
    /// The effective `sslmode`.
    pub mode: Mode,
    /// `sslrootcert`.
    pub roots: Roots,
    /// `sslcert`: the client certificate.
    pub cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's key (a secret file).
    pub key: Option<PathBuf>,
}

/// libpq's `sslmode`, in increasing strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// Never TLS.
    Disable,
    /// Plain first, TLS if the server refuses plain.
    Allow,
    /// TLS first, plain if TLS fails (the default).
    Prefer,
    /// TLS, certificate not checked.
    Require,
    /// TLS, chain checked, host name not.
    VerifyCa,
    /// TLS, chain and host name checked.
    VerifyFull,
}

impl Mode {
    /// The libpq name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Allow => "allow",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Option<Mode> {
        Some(match s.to_ascii_lowercase().as_str() {
            "disable" => Mode::Disable,
            "allow" => Mode::Allow,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            _ => return None,
        })
    }

    fn sqlx(self) -> PgSslMode {
        match self {
            Mode::Disable => PgSslMode::Disable,
            Mode::Allow => PgSslMode::Allow,
            Mode::Prefer => PgSslMode::Prefer,
            Mode::Require => PgSslMode::Require,
            Mode::VerifyCa => PgSslMode::VerifyCa,
            Mode::VerifyFull => PgSslMode::VerifyFull,
        }
    }
}

const MODE_KEYS: &[&str] = &["sslmode", "ssl-mode"];
const ROOT_KEYS: &[&str] = &["sslrootcert", "ssl-root-cert", "ssl-ca"];
const CERT_KEYS: &[&str] = &["sslcert", "ssl-cert"];
const KEY_KEYS: &[&str] = &["sslkey", "ssl-key"];

/// The query parameters that name files (certificates, keys): relative
/// paths in a Connection manifest are resolved like its secret files.
pub const FILE_PARAMS: &[&str] = &[
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
];

/// Rewrites the relative certificate and key paths of a URL's query to
/// paths under `dir` (a Connection's secrets folder); `system` and absolute
/// paths are kept. Whether anything changed.
pub fn resolve_file_params(url: &mut url::Url, dir: &Path) -> bool {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut changed = false;
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(k, v)| {
            let relative = !v.is_empty() && v != "system" && Path::new(&v).is_relative();
            if FILE_PARAMS.contains(&k.as_str()) && relative {
                changed = true;
                let abs = dir.join(&v).to_string_lossy().into_owned();
                (k, abs)
            } else {
                (k, v)
            }
        })
        .collect();
    if changed {
        url.set_query(None);
        url.query_pairs_mut().extend_pairs(pairs);
    }
    changed
}

/// Why a URL's TLS parameters are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsParamError {
    /// An `sslmode` libpq does not know.
    #[error("sslmode={0} is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    UnknownMode(String),
    /// `sslrootcert=system` with a mode that would not check the server.
    #[error("sslrootcert=system needs sslmode=verify-full (got sslmode={}): a weaker mode would not check the server", .0.as_str())]
    WeakModeWithSystemRoots(Mode),
    /// A client certificate without its key, or a key without certificate.
    #[error("sslcert and sslkey go together: give both or neither")]
    HalfClientCertificate,
}

/// Why a database URL cannot become connect options. The messages never
/// repeat the URL's password nor a file's content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The driver refuses the URL; its message, scrubbed of the URL's secrets.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The TLS parameters contradict each other.
    #[error("invalid database URL: {0}")]
    Params(#[source] TlsParamError),
    /// A certificate or key file that cannot be opened.
    #[error("cannot read the {param} file {}: {source}", .path.display())]
    Unreadable {
        /// The URL parameter naming the file.
        param: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it cannot be opened.
        #[source]
        source: std::io::Error,
    },
}

/// Decides the TLS parameters of a URL's query pairs, libpq's way (pure).
pub fn tls_params<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<TlsParams, TlsParamError> {
    let mut mode = None;
    let mut root = None;
    let mut cert = None;
    let mut key = None;
    for (k, v) in pairs {
        if MODE_KEYS.contains(&k) {
            mode = Some(Mode::parse(v).ok_or_else(|| TlsParamError::UnknownMode(v.to_string()))?);
        } else if ROOT_KEYS.contains(&k) {
            root = Some(v);
        } else if CERT_KEYS.contains(&k) {
            cert = Some(PathBuf::from(v));
        } else if KEY_KEYS.contains(&k) {
            key = Some(PathBuf::from(v));
        }
    }
    let roots = match root {
        None | Some("") => Roots::Default,
        Some("system") => Roots::System,
        Some(f) => Roots::File(PathBuf::from(f)),
    };
    let mode = match (mode, &roots) {
        (None, Roots::System) => Mode::VerifyFull,
        (Some(m), Roots::System) if m != Mode::VerifyFull => {
            return Err(TlsParamError::WeakModeWithSystemRoots(m))
        }
        (Some(Mode::Require), Roots::File(_)) => Mode::VerifyCa,
        (m, _) => m.unwrap_or(Mode::Prefer),
    };
    if cert.is_some() != key.is_some() {
        return Err(TlsParamError::HalfClientCertificate);
    }
    Ok(TlsParams {
        mode,
        roots,
        cert,
        key,
    })
}

/// Parses a database URL into connect options with libpq's TLS meanings
/// (see the module documentation). Checks that the certificate and key
/// files can be read. The error never repeats the URL nor a file's content.
pub fn connect_options(url: &Secret) -> Result<PgConnectOptions, TlsError> {
    let invalid =
        |e: &dyn std::fmt::Display| TlsError::InvalidUrl(secret::scrub(&e.to_string(), &[url]));
    let Ok(mut parsed) = url::Url::parse(url.expose()) else {
        // Let the driver say what is wrong (scrubbed).
        return PgConnectOptions::from_str(url.expose())
            .map_err(|e| invalid(&e))
            .map(|o| o.ssl_mode(PgSslMode::Prefer));
    };
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let params = tls_params(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(|e| {
        // A parameter's value is echoed: scrubbed should it hold a secret.
        let text = e.to_string();
        if secret::scrub(&text, &[url]) == text {
            TlsError::Params(e)
        } else {
            invalid(&e)
        }
    })?;
    if params.roots == Roots::System {
        // Without a root file sqlx loads the system roots; it would read
        // `system` as a file name.
        parsed.set_query(None);
        let kept: Vec<_> = pairs
            .iter()
            .filter(|(k, _)| !ROOT_KEYS.contains(&k.as_str()))
            .collect();
        if !kept.is_empty() {
            parsed.query_pairs_mut().extend_pairs(kept);
        }
    }
    if let Roots::File(f) = &params.roots {
        readable("sslrootcert", f)?;
    }
    if let Some(f) = &params.cert {
        readable("sslcert", f)?;
    }
    if let Some(f) = &params.key {
        readable("sslkey", f)?;
    }
    let opts = PgConnectOptions::from_str(parsed.as_str()).map_err(|e| invalid(&e))?;
    Ok(opts.ssl_mode(params.mode.sqlx()))
}

/// The most bytes a certificate or key file may hold (a CA bundle of
/// every public root is about 200 KiB).
pub const MAX_TLS_FILE_BYTES: u64 = 1024 * 1024;

/// The driver reads these files itself: a FIFO (which would block the
/// connect forever), a device or a huge file is refused before it does.
fn readable(param: &'static str, path: &Path) -> Result<(), TlsError> {
    crate::secret::open_regular(path, MAX_TLS_FILE_BYTES)
        .map(drop)
        .map_err(|e| TlsError::Unreadable {
            param,
            path: path.to_path_buf(),
            source: match e {
                crate::secret::SmallFileError::Io(e) => e,
                other => std::io::Error::other(other),
            },
        })
}

/// Connects as libpq would for the options' `sslmode`: `allow` tries
/// without TLS then with it, `prefer` with TLS then without. Returns the
/// connection and the options that worked (for a pool to reuse).
pub async fn connect(
    opts: &PgConnectOptions,
) -> Result<(PgConnection, PgConnectOptions), sqlx::Error> {
    let second = match opts.get_ssl_mode() {
        PgSslMode::Allow => Some((PgSslMode::Disable, PgSslMode::Require)),
        PgSslMode::Prefer => Some((PgSslMode::Prefer, PgSslMode::Disable)),
        _ => None,
    };
    let Some((a, b)) = second else {
        return Ok((opts.connect().await?, opts.clone()));
    };
    let first = opts.clone().ssl_mode(a);
    match first.connect().await {
        Ok(c) => Ok((c, first)),
        Err(e1) => {
            let then = opts.clone().ssl_mode(b);
            match then.connect().await {
                Ok(c) => Ok((c, then)),
                // `allow` failed twice: the TLS attempt says more (a
                // hostssl-only server rejects the plain one). `prefer`: the
                // TLS attempt too.
                Err(e2) if matches!(a, PgSslMode::Disable) => {
                    drop(e1);
                    Err(e2)
                }
                Err(_) => Err(e1),
            }
        }
    }
}

/// The TLS version of a session (`TLSv1.3`), or `None` when it is not
/// encrypted.
pub async fn session_tls(conn: &mut PgConnection) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(bool, Option<String>)> =
        sqlx::query_as("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_optional(conn)
            .await?;
    Ok(match row {
        Some((true, v)) => Some(v.unwrap_or_else(|| "TLS".into())),
        _ => None,
    })
}

/// What went wrong when connecting, in words an operator can act on: which
/// certificate check failed, a server without TLS, a server that wants
/// TLS. Not scrubbed: the caller scrubs with the URL it holds.
pub fn explain(e: &sqlx::Error) -> String {
    if let Some(r) = find_rustls(e) {
        return explain_rustls(r);
    }
    let text = e.to_string();
    if text.contains("server does not support TLS") {
        return "the server does not accept TLS connections, but the URL's sslmode requires TLS (require, verify-ca or verify-full)".into();
    }
    if let sqlx::Error::Database(db) = e {
        let m = db.message();
        if m.contains("no pg_hba.conf entry") && m.contains("no encryption") {
            return format!("the server accepts only TLS connections (pg_hba.conf hostssl), and this connection was not encrypted: use sslmode=require or stronger ({m})");
        }
        if m.contains("client certificate") {
            return format!(
                "the server asks for a client certificate: give sslcert and sslkey ({m})"
            );
        }
    }
    text
}

/// The refusal of an X.509 version 1 server certificate (what `openssl
/// x509 -req` makes without extensions, PostgreSQL's own recipe): libpq
/// takes one, rustls does not.
const V1_CERT: &str = "TLS: the server's certificate is a version 1 certificate (X.509 v1, no extensions), which cpi does not accept (libpq does): reissue it as version 3 with the host names it serves, e.g. `openssl x509 -req ... -extfile <(printf 'subjectAltName=DNS:HOST')`; its CA and host name were not checked";

fn explain_rustls(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "TLS: the server's certificate is not signed by a trusted CA (unknown CA): give the CA's certificate with sslrootcert".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => "TLS: the server's certificate is not valid for the host name in the URL (wrong host name): connect by a name the certificate lists".into(),
            C::Expired | C::ExpiredContext { .. } => "TLS: the server's certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "TLS: the server's certificate is not valid yet (check the clocks)".into(),
            // webpki reads the certificate before any check of its chain
            // or name, and reads version 3 only: a wrong CA or host name
            // of a v1 certificate is never reached, so none is claimed.
            C::Other(o) if format!("{o:?}").contains("UnsupportedCertVersion") => V1_CERT.into(),
            other => format!("TLS: the server's certificate does not verify: {other:?}"),
        },
        rustls::Error::AlertReceived(a) => format!("TLS: the server refused the handshake ({a:?}); a client certificate (sslcert, sslkey) may be missing or not trusted by the server"),
        other => format!("TLS handshake failed: {other}"),
    }
}

/// The rustls error inside a driver error, however it is wrapped (sqlx
/// reports a failed handshake as an I/O error around it).
fn find_rustls(e: &sqlx::Error) -> Option<&rustls::Error> {
    fn walk<'a>(
        mut cur: Option<&'a (dyn std::error::Error + 'static)>,
    ) -> Option<&'a rustls::Error> {
        while let Some(e) = cur {
            if let Some(r) = e.downcast_ref::<rustls::Error>() {
                return Some(r);
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if let Some(inner) = io.get_ref() {
                    if let Some(r) = walk(Some(inner)) {
                        return Some(r);
                    }
                }
            }
            cur = e.source();
        }
        None
    }
    match e {
        sqlx::Error::Io(io) => walk(io.get_ref().map(|i| i as _)),
        sqlx::Error::Tls(b) => walk(Some(b.as_ref())),
        other => walk(std::error::Error::source(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &[(&str, &str)]) -> Result<TlsParams, TlsParamError> {
        tls_params(q.iter().copied())
    }

    #[test]
    fn default_is_prefer_with_default_roots() {
        let p = params(&[]).unwrap();
        assert_eq!((p.mode, p.roots), (Mode::Prefer, Roots::Default));
    }

    #[test]
    fn system_roots_mean_verify_full_and_refuse_weaker_modes() {
        assert_eq!(
            params(&[("sslrootcert", "system")]).unwrap().mode,
            Mode::VerifyFull
        );
        let e = params(&[("sslrootcert", "system"), ("sslmode", "require")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("verify-full"), "{e}");
    }

    #[test]
    fn require_with_a_root_file_verifies_the_chain() {
        let p = params(&[("sslmode", "require"), ("sslrootcert", "/ca.pem")]).unwrap();
        assert_eq!(p.mode, Mode::VerifyCa);
        assert_eq!(p.roots, Roots::File("/ca.pem".into()));
        assert_eq!(
            params(&[("sslmode", "require")]).unwrap().mode,
            Mode::Require
        );
    }

    #[test]
    fn bad_mode_and_half_client_cert_are_refused() {
        assert!(params(&[("sslmode", "sometimes")]).is_err());
        assert!(params(&[("sslcert", "/c.pem")]).is_err());
        let p = params(&[("sslcert", "/c.pem"), ("sslkey", "/k.pem")]).unwrap();
        assert_eq!(p.key, Some("/k.pem".into()));
    }

    #[test]
    fn handshake_errors_name_the_failed_check() {
        use rustls::CertificateError as C;
        // sqlx reports a failed handshake as an I/O error around rustls's.
        let wrapped = |c: C| {
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(c),
            ))
        };
        for (c, want) in [
            (C::UnknownIssuer, "unknown CA"),
            (C::NotValidForName, "wrong host name"),
            (C::Expired, "has expired"),
            (C::NotValidYet, "not valid yet"),
        ] {
            let text = explain(&wrapped(c));
            assert!(text.contains(want), "{text}");
        }
        let e = sqlx::Error::Tls("server does not support TLS".into());
        assert!(explain(&e).contains("does not accept TLS"));
        // webpki's refusal of a v1 certificate comes as an "other" error.
        #[derive(Debug)]
        struct UnsupportedCertVersion;
        impl std::fmt::Display for UnsupportedCertVersion {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{self:?}")
            }
        }
        impl std::error::Error for UnsupportedCertVersion {}
        let v1 = C::Other(rustls::OtherError(std::sync::Arc::new(
            UnsupportedCertVersion,
        )));
        let text = explain(&wrapped(v1));
        assert!(text.contains("version 1 certificate"), "{text}");
        assert!(!text.contains("unknown CA"), "{text}");
    }

    #[test]
    fn relative_cert_paths_resolve_under_the_secrets_dir() {
        let mut u = url::Url::parse(
            "postgresql://u@h/db?sslmode=verify-full&sslrootcert=ca.pem&sslcert=/abs/c.pem&sslkey=k/c.key",
        )
        .unwrap();
        assert!(resolve_file_params(&mut u, Path::new("/s")));
        assert_eq!(
            u.as_str(),
            "postgresql://u@h/db?sslmode=verify-full&sslrootcert=%2Fs%2Fca.pem&sslcert=%2Fabs%2Fc.pem&sslkey=%2Fs%2Fk%2Fc.key"
        );
        let mut sys = url::Url::parse("postgresql://h/db?sslrootcert=system").unwrap();
        assert!(!resolve_file_params(&mut sys, Path::new("/s")));
    }

    #[test]
    fn connect_options_names_a_missing_file_not_the_password() {
        let url = Secret::new(
            "postgresql://u:hunter22@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        );
        let e = connect_options(&url).unwrap_err().to_string();
        assert!(e.contains("sslrootcert file /nonexistent/ca.pem"), "{e}");
        assert!(!e.contains("hunter22"));
        let ok = connect_options(&Secret::new("postgresql://u@h/db?sslrootcert=system")).unwrap();
        assert!(matches!(ok.get_ssl_mode(), PgSslMode::VerifyFull));
    }
}
