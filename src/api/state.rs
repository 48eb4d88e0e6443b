//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::access::token::KnownToken;
use crate::access::Policy;

use super::server;
use crate::metrics::Health;
use crate::secret::Secret;

/// How long `POST /connections/{id}/test` waits for the target database.
pub const CONNECTION_TEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What every handler shares: the pool, the token, the health, the limits.
#[derive(Clone)]
pub struct AppState {
    /// The management database.
    pub pool: PgPool,
    /// The API token; `None` makes every guarded endpoint answer 403.
    pub token: Option<Secret>,
    /// Shared with the daemon, which reports reconciles and watcher errors.
    pub health: Arc<Health>,
    /// How long `POST /connections/{id}/test` waits.
    pub connection_test_timeout: Duration,
    /// `--inbox-root`: where a project's folders may be; none: the API may not set them.
    pub inbox_roots: Arc<Vec<std::path::PathBuf>>,
    /// Connection cap, timeouts and CORS origins of the server.
    pub http: server::HttpSettings,
    /// The named tokens and role bindings of the manifests, and the anonymous role;
    /// replaced whole by the daemon after each manifest load.
    pub access: AccessCell,
    /// Single sign-on for the console (`--oidc-issuer`); none: tokens only.
    pub sso: Option<Arc<super::session::Sso>>,
    /// How `POST /hooks/{receiver}` wakes the daemon; `None` without one (`cpi serve`).
    pub wake: Option<Wake>,
}

/// What wakes the daemon's loops at once.
#[derive(Debug, Clone, Default)]
pub struct Wake {
    /// The reconcile loop.
    pub reconcile: Arc<tokio::sync::Notify>,
    /// The inbox scanner (a full scan of every inbox).
    pub rescan: Arc<tokio::sync::Notify>,
}

/// The access rules the API judges requests by.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The bindings (the anonymous role is set per request from `--anonymous`).
    pub policy: Policy,
    /// The ApiTokens of the manifests (hashes only).
    pub tokens: Vec<KnownToken>,
}

/// The access rules, shared by the API and the daemon, which replaces them
/// after each manifest load.
#[derive(Debug, Clone, Default)]
pub struct AccessCell(Arc<std::sync::RwLock<Arc<Access>>>);

impl AccessCell {
    /// The rules as they are now.
    pub fn get(&self) -> Arc<Access> {
        let guard = self.0.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&guard)
    }

    /// Replaces the tokens and bindings.
    pub fn set(&self, tokens: Vec<KnownToken>, bindings: Vec<crate::access::Binding>) {
        let mut guard = self.0.write().unwrap_or_else(|e| e.into_inner());
        *guard = Arc::new(Access {
            policy: Policy {
                bindings,
                anonymous: None,
            },
            tokens,
        });
    }
}

impl AppState {
    /// The access rules as they are now.
    pub fn access(&self) -> Arc<Access> {
        self.access.get()
    }

    /// Whether any credential is configured: the API token, an ApiToken,
    /// or single sign-on (then `--anonymous` defaults to none).
    pub fn credentials_configured(&self) -> bool {
        self.token.is_some() || !self.access().tokens.is_empty() || self.sso.is_some()
    }

    /// The policy requests are judged by now: the bindings, and the
    /// anonymous role of `--anonymous`.
    pub fn policy(&self) -> Policy {
        Policy {
            anonymous: self.http.anonymous.role(self.credentials_configured()),
            ..self.access().policy.clone()
        }
    }
}

impl AppState {
    /// The state with the default connection test timeout and no named token.
    pub fn new(pool: PgPool, token: Option<Secret>, health: Arc<Health>) -> Self {
        AppState {
            pool,
            token,
            health,
            connection_test_timeout: CONNECTION_TEST_TIMEOUT,
            inbox_roots: Arc::default(),
            http: server::HttpSettings::default(),
            access: AccessCell::default(),
            sso: None,
            wake: None,
        }
    }
}
