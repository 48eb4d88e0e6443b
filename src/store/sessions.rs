//! `cpi_sessions` and `cpi_sso_logins`: the console's single-sign-on
//! sessions and the sign-ins under way (migration 0120). Rows are keyed by
//! the SHA-256 of what the browser holds, never by the value itself.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use super::error::Result;
use crate::secret::Secret;

/// A signed-in user's session.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    /// The ID token's `sub`.
    pub subject: String,
    /// The name bindings match (`email`, else `sub`).
    pub name: String,
    /// The groups of the groups claim.
    pub groups: Vec<String>,
    /// The anti-CSRF token of the session.
    pub csrf: String,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
}

/// Stores a new session under `id_sha256`, with the ID token it signed in
/// with (never logged: only sent back to the provider at sign-out).
pub async fn create(
    db: impl PgExecutor<'_>,
    id_sha256: &str,
    s: &Session,
    id_token: Option<&Secret>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO cpi_sessions (id_sha256, subject, name, groups, csrf, expires_at, id_token)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id_sha256)
    .bind(&s.subject)
    .bind(&s.name)
    .bind(&s.groups)
    .bind(&s.csrf)
    .bind(s.expires_at)
    .bind(id_token.map(Secret::expose))
    .execute(db)
    .await?;
    Ok(())
}

/// The session of `id_sha256`, unless it has expired.
pub async fn get(db: impl PgExecutor<'_>, id_sha256: &str) -> Result<Option<Session>> {
    Ok(sqlx::query_as::<_, Session>(
        "SELECT subject, name, groups, csrf, expires_at FROM cpi_sessions
         WHERE id_sha256 = $1 AND expires_at > now()",
    )
    .bind(id_sha256)
    .fetch_optional(db)
    .await?)
}

/// Ends the session of `id_sha256`: `None` when there was none, else the
/// ID token it signed in with (if kept), for the sign-out at the provider.
pub async fn delete(db: impl PgExecutor<'_>, id_sha256: &str) -> Result<Option<Option<Secret>>> {
    let done: Option<(Option<String>,)> =
        sqlx::query_as("DELETE FROM cpi_sessions WHERE id_sha256 = $1 RETURNING id_token")
            .bind(id_sha256)
            .fetch_optional(db)
            .await?;
    Ok(done.map(|(t,)| t.map(Secret::new)))
}

/// Removes expired sessions and sign-ins (called at each sign-in).
pub async fn delete_expired(db: impl PgExecutor<'_> + Copy) -> Result<u64> {
    let a = sqlx::query("DELETE FROM cpi_sessions WHERE expires_at <= now()")
        .execute(db)
        .await?
        .rows_affected();
    let b = sqlx::query("DELETE FROM cpi_sso_logins WHERE expires_at <= now()")
        .execute(db)
        .await?
        .rows_affected();
    Ok(a + b)
}

/// Remembers a sign-in under way for `ttl`.
pub async fn begin_login(
    db: impl PgExecutor<'_>,
    state_sha256: &str,
    nonce: &str,
    pkce_verifier: &str,
    ttl: Duration,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO cpi_sso_logins (state_sha256, nonce, pkce_verifier, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(state_sha256)
    .bind(nonce)
    .bind(pkce_verifier)
    .bind(ttl.as_secs_f64())
    .execute(db)
    .await?;
    Ok(())
}

/// Takes (deletes) the sign-in of `state_sha256`: its nonce and PKCE
/// verifier, unless unknown or expired. A state serves once.
pub async fn take_login(
    db: impl PgExecutor<'_>,
    state_sha256: &str,
) -> Result<Option<(String, String)>> {
    Ok(sqlx::query_as::<_, (String, String)>(
        "DELETE FROM cpi_sso_logins WHERE state_sha256 = $1 AND expires_at > now()
         RETURNING nonce, pkce_verifier",
    )
    .bind(state_sha256)
    .fetch_optional(db)
    .await?)
}
