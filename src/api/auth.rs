//! Who a request is: the token of `--api-token-file` (admin), a named
//! ApiToken, or nobody; and the proofs handlers take that the enforcing
//! layer let the request through.

use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use std::sync::Arc;

use super::error::ApiError;
use super::state::AppState;
use crate::access::{self, token, Permission, Policy, Principal, Target};
use crate::secret::{self, Secret};

/// Who the request is and the policy it was judged by: put in the
/// request's extensions by the enforcing layer (`api::guard`) once the
/// route's permission was granted.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who made the request.
    pub principal: Principal,
    /// The policy the request was judged by.
    pub policy: Arc<Policy>,
}

impl Caller {
    /// Whether the caller may also use `permission` on `target`.
    pub fn may(&self, permission: Permission, target: &Target) -> bool {
        access::allows(&self.policy, &self.principal, permission, target).is_allowed()
    }
}

/// Proof that the enforcing layer granted the route's permission: a
/// handler that takes it as its first argument runs only then.
#[derive(Debug)]
pub struct Authorized(pub Caller);

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        // Missing only if a route was served without the layer: refuse.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .map(Authorized)
            .ok_or(ApiError::Unauthorized)
    }
}

/// The caller, for routes that answer every reader but show more to some
/// (`/jobs`: row values need `read_secrets` on the job's project).
#[derive(Debug)]
pub struct Authorization(pub Option<Caller>);

impl Authorization {
    /// Whether the caller may read every project (a list needs no filter,
    /// so rows of a project deleted since are listed too).
    pub fn reads_everything(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|c| c.may(Permission::Read, &Target::Everything))
    }

    /// The projects of `names` the caller may read, for filtering a list.
    pub fn readable_among(&self, names: Vec<String>) -> Vec<String> {
        let caller = self.0.as_ref();
        names
            .into_iter()
            .filter(|n| {
                caller.is_some_and(|c| c.may(Permission::Read, &Target::Project(n.clone())))
            })
            .collect()
    }

    /// Whether the caller may read `target` (one row of a filtered list).
    pub fn reads(&self, target: &Target) -> bool {
        self.0
            .as_ref()
            .is_some_and(|c| c.may(Permission::Read, target))
    }

    /// The projects a list is filtered to: `None` (no filter) for a caller
    /// who reads everything, else the existing projects they may read. The
    /// names are read only for a caller bound to some projects.
    pub async fn readable_projects(
        &self,
        pool: &sqlx::PgPool,
    ) -> Result<Option<Vec<String>>, crate::store::StoreError> {
        if self.reads_everything() {
            return Ok(None);
        }
        Ok(Some(
            self.readable_among(crate::store::project_names(pool).await?),
        ))
    }

    /// Whether the caller may see secrets and row values of `project`.
    pub fn sees_secrets_of(&self, project: &str) -> bool {
        self.0.as_ref().is_some_and(|c| {
            c.may(
                Permission::ReadSecrets,
                &Target::Project(project.to_string()),
            )
        })
    }
}

impl FromRequestParts<AppState> for Authorization {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &AppState,
    ) -> Result<Self, std::convert::Infallible> {
        Ok(Authorization(parts.extensions.get::<Caller>().cloned()))
    }
}

/// Why the credentials of a request were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadCredentials {
    /// A bearer token that is neither `--api-token-file`'s nor a known ApiToken.
    Unknown,
    /// A known ApiToken past its expiry (its name).
    Expired(String),
}

/// Who the request is, from its `Authorization` header: the token of
/// `--api-token-file` is admin, a known ApiToken is itself, no header is
/// anonymous.
pub fn principal(
    headers: &axum::http::HeaderMap,
    legacy: Option<&Secret>,
    tokens: &[token::KnownToken],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Principal, BadCredentials> {
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(given) = given else {
        return if headers.contains_key(AUTHORIZATION) {
            Err(BadCredentials::Unknown)
        } else {
            Ok(Principal::Anonymous)
        };
    };
    if legacy.is_some_and(|t| token_matches(t, given)) {
        return Ok(Principal::LegacyAdmin);
    }
    match token::check(tokens, given, now) {
        token::TokenCheck::Valid(name) => Ok(Principal::Token(name)),
        token::TokenCheck::Expired(name) => Err(BadCredentials::Expired(name)),
        token::TokenCheck::Unknown => Err(BadCredentials::Unknown),
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
