//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

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
}

impl AppState {
    /// The state with the default connection test timeout.
    pub fn new(pool: PgPool, token: Option<Secret>, health: Arc<Health>) -> Self {
        AppState {
            pool,
            token,
            health,
            connection_test_timeout: CONNECTION_TEST_TIMEOUT,
            inbox_roots: Arc::default(),
            http: server::HttpSettings::default(),
        }
    }
}
