//! The bearer token that guards writes, connection tests and every response
//! that carries a `database_url`.

use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AppState;
use crate::secret::{self, Secret};

/// Proof that the request carried the configured token: a handler that
/// takes it as its first argument is guarded before anything else is read.
#[derive(Debug)]
pub struct Authorized;

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &state.token else {
            return Err(ApiError::TokenNotConfigured);
        };
        let given = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        match given {
            Some(token) if token_matches(expected, token) => Ok(Authorized),
            _ => Err(ApiError::Unauthorized),
        }
    }
}

/// Whether the request carried the configured token, for routes that
/// answer everyone but show more to the token's holder (`/jobs`).
#[derive(Debug)]
pub struct Authorization(pub bool);

impl FromRequestParts<AppState> for Authorization {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, std::convert::Infallible> {
        Ok(Authorization(
            Authorized::from_request_parts(parts, state).await.is_ok(),
        ))
    }
}

/// Compares digests, not the tokens: equal length whatever was sent, and a
/// constant-time comparison, so timing tells nothing about the token.
pub fn token_matches(expected: &Secret, given: &str) -> bool {
    let a = Sha256::digest(expected.expose().as_bytes());
    let b = Sha256::digest(given.as_bytes());
    a.ct_eq(&b).into()
}

/// Why the API token file cannot serve as the token.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file cannot be read.
    #[error("cannot read --api-token-file {path}: {source}")]
    Read {
        /// The file as given.
        path: String,
        /// Why it cannot be read (or is refused: not a regular file, too large).
        #[source]
        source: secret::SmallFileError,
    },
    /// The file holds nothing but white space (its path).
    #[error("--api-token-file {0} is empty")]
    Empty(String),
}

/// Reads the token (surrounding whitespace trimmed) and registers it, so
/// that no message can ever print it.
pub fn load_token(path: &Path) -> Result<Secret, TokenFileError> {
    let text = secret::read_secret_file(path).map_err(|source| TokenFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenFileError::Empty(path.display().to_string()));
    }
    let token = Secret::new(token);
    secret::register(&token);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        let t = Secret::new("s3cret-token");
        assert!(token_matches(&t, "s3cret-token"));
        assert!(!token_matches(&t, "s3cret-toke"));
        assert!(!token_matches(&t, ""));
    }

    #[test]
    fn token_file_is_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "  abc-123\n").unwrap();
        assert_eq!(load_token(&p).unwrap().expose(), "abc-123");
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(load_token(&p), Err(TokenFileError::Empty(_))));
        assert!(matches!(
            load_token(&dir.path().join("missing")),
            Err(TokenFileError::Read { .. })
        ));
    }
}
