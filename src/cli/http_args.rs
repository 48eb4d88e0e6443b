//! The API server's arguments, shared by `cpi run --listen` and `cpi
//! serve`: limits, CORS, anonymous access, HTTPS and single sign-on.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};

/// The HTTP server's limits and CORS (`run --listen`, `serve`).
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Connections served at once; more wait until one closes.
    #[arg(long, default_value_t = crate::api::server::DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    pub max_connections: usize,
    /// A request's headers must arrive within this; also how long an idle
    /// kept-alive connection stays open.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// A request not answered within this gets 408.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// An origin (`https://console.example.com`) whose pages may call the
    /// API from a browser (repeatable; none: no CORS headers).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// What requests without a token may do: `none`, or `viewer` (read
    /// everything but secrets and row values). Default: viewer while no
    /// token is configured, none once --api-token-file or an ApiToken is.
    #[arg(long, value_enum, env = "CPI_ANONYMOUS")]
    pub anonymous: Option<AnonymousArg>,
    /// HTTPS: the server's certificate chain (PEM, the certificate first).
    /// Read again when it changes: a renewed certificate needs no restart.
    #[arg(
        long,
        value_name = "FILE",
        env = "CPI_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// HTTPS: the certificate's private key (PEM; keep it mode 0600).
    #[arg(
        long,
        value_name = "FILE",
        env = "CPI_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,
    /// Single sign-on for the console: the OpenID Connect issuer URL
    /// (its `/.well-known/openid-configuration` is read on first sign-in).
    #[arg(
        long,
        value_name = "URL",
        env = "CPI_OIDC_ISSUER",
        requires_all = ["oidc_client_id", "public_url"]
    )]
    pub oidc_issuer: Option<String>,
    /// The console's client id at the provider.
    #[arg(
        long,
        value_name = "ID",
        env = "CPI_OIDC_CLIENT_ID",
        requires = "oidc_issuer"
    )]
    pub oidc_client_id: Option<String>,
    /// A file holding the client secret (none: a public client, PKCE only).
    #[arg(
        long,
        value_name = "FILE",
        env = "CPI_OIDC_CLIENT_SECRET_FILE",
        requires = "oidc_issuer"
    )]
    pub oidc_client_secret_file: Option<PathBuf>,
    /// The ID token claim that lists the user's groups.
    #[arg(
        long,
        value_name = "CLAIM",
        default_value = "groups",
        env = "CPI_OIDC_GROUPS_CLAIM"
    )]
    pub oidc_groups_claim: String,
    /// The URL browsers reach cpi at (`https://cpi.example.com`): the
    /// redirect URI is `<URL>/auth/callback`, and a cookie-made action must
    /// come from this origin.
    #[arg(long, value_name = "URL", env = "CPI_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How long a single-sign-on session lasts.
    #[arg(long, default_value = "8h", value_parser = humantime::parse_duration)]
    pub session_ttl: Duration,
}

/// `--anonymous`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AnonymousArg {
    None,
    Viewer,
}

impl HttpArgs {
    /// The server settings these arguments name.
    pub fn settings(&self) -> crate::api::server::HttpSettings {
        crate::api::server::HttpSettings {
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
            request_timeout: self.request_timeout,
            cors_origins: self.cors_origins.clone(),
            anonymous: match self.anonymous {
                None => crate::access::Anonymous::Auto,
                Some(AnonymousArg::None) => crate::access::Anonymous::None,
                Some(AnonymousArg::Viewer) => crate::access::Anonymous::Viewer,
            },
            tls: self.tls_files(),
        }
    }

    /// `--tls-cert-file` and `--tls-key-file` (clap requires both or neither).
    pub fn tls_files(&self) -> Option<crate::api::https::TlsFiles> {
        Some(crate::api::https::TlsFiles {
            cert: self.tls_cert_file.clone()?,
            key: self.tls_key_file.clone()?,
        })
    }

    /// Single sign-on as these arguments configure it (the client secret
    /// file is read now); none without `--oidc-issuer`.
    pub fn sso(&self) -> anyhow::Result<Option<std::sync::Arc<crate::api::session::Sso>>> {
        use anyhow::Context;
        let (Some(issuer), Some(client_id)) = (&self.oidc_issuer, &self.oidc_client_id) else {
            return Ok(None);
        };
        let public = self
            .public_url
            .as_deref()
            .context("--oidc-issuer needs --public-url")?;
        let public = url::Url::parse(public).context("--public-url")?;
        if !matches!(public.scheme(), "http" | "https") || public.host_str().is_none() {
            anyhow::bail!("--public-url must be an http(s) URL with a host");
        }
        let origin = public.origin().ascii_serialization();
        let client_secret = match &self.oidc_client_secret_file {
            Some(path) => {
                let text = crate::secret::read_secret_file(path).with_context(|| {
                    format!("cannot read --oidc-client-secret-file {}", path.display())
                })?;
                let secret = crate::secret::Secret::new(text.trim());
                if secret.expose().is_empty() {
                    anyhow::bail!("--oidc-client-secret-file {} is empty", path.display());
                }
                crate::secret::register(&secret);
                Some(secret)
            }
            None => None,
        };
        let redirect_url = format!("{}/auth/callback", public.as_str().trim_end_matches('/'));
        let oidc = crate::api::oidc::Oidc::new(crate::api::oidc::OidcSettings {
            issuer: issuer.clone(),
            client_id: client_id.clone(),
            client_secret,
            groups_claim: self.oidc_groups_claim.clone(),
            redirect_url,
        })?;
        Ok(Some(std::sync::Arc::new(crate::api::session::Sso {
            oidc,
            origin,
            secure: public.scheme() == "https" || self.tls_files().is_some(),
            session_ttl: self.session_ttl,
        })))
    }

    /// Reads the certificate and key once, so that a bad pair fails the
    /// command before anything else is done.
    pub fn check_tls(&self) -> anyhow::Result<()> {
        if let Some(files) = self.tls_files() {
            crate::api::https::ReloadingCert::new(files)?;
        }
        Ok(())
    }
}
