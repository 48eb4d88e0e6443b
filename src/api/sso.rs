//! Single sign-on for the console (`/auth/*`): sign-in with OpenID Connect
//! ([`super::oidc`]), a server-side session (`cpi_sessions`) behind an
//! `HttpOnly`, `SameSite=Lax` cookie (`Secure` under HTTPS), sign-out, and
//! `/auth/me` (who the caller is and what they may do, for the console).
//!
//! The cookie and the CSRF rule are [`super::session`]'s; the enforcing
//! layer applies the rule to every routed request ([`caller`] says who it is).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::oidc::Identity;
use super::session::{
    cookie, csrf_check, set_cookie, Sso, LOGIN_COOKIE, LOGIN_TTL, SESSION_COOKIE,
};
use super::state::AppState;
use crate::access::token::sha256_hex;
use crate::access::{Permission, Principal, Target};
use crate::store::audit as trail;
use crate::store::sessions::{self, Session};

/// A new random value for a cookie or a CSRF token (256 bits).
fn random() -> String {
    crate::access::token::generate()
        .expose()
        .trim_start_matches("cpi_")
        .to_string()
}

/// The signed-in session of the request's cookie: the row's key and the
/// session; `None` without single sign-on, a cookie, or a live session.
pub async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(String, Session)>, ApiError> {
    if state.sso.is_none() {
        return Ok(None);
    }
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    if value.is_empty() || value.len() > 128 {
        return Ok(None);
    }
    let key = sha256_hex(value);
    Ok(sessions::get(&state.pool, &key).await?.map(|s| (key, s)))
}

/// Who the request is: a bearer token's (`Authorization` wins), else the
/// session cookie's user, else anonymous; and the session, if the cookie's.
pub async fn caller(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Principal, Option<Session>), ApiError> {
    let rules = state.access();
    let principal = super::auth::principal(
        headers,
        state.token.as_ref(),
        &rules.tokens,
        chrono::Utc::now(),
    )
    .or_else(|e| match e {
        // With no token configured at all, a header proves nothing and
        // changes nothing: the request is anonymous (and told, if refused,
        // that no token is configured).
        super::auth::BadCredentials::Unknown
            if state.token.is_none() && rules.tokens.is_empty() =>
        {
            Ok(Principal::Anonymous)
        }
        super::auth::BadCredentials::Unknown => Err(ApiError::Unauthorized),
        super::auth::BadCredentials::Expired(name) => Err(ApiError::TokenExpired(name)),
    })?;
    if principal != Principal::Anonymous || headers.contains_key(header::AUTHORIZATION) {
        return Ok((principal, None));
    }
    Ok(match session_of(state, headers).await? {
        Some((_, s)) => (principal_of(&s), Some(s)),
        None => (Principal::Anonymous, None),
    })
}

/// The principal of a session.
pub fn principal_of(s: &Session) -> Principal {
    Principal::User {
        name: s.name.clone(),
        groups: s.groups.clone(),
    }
}

fn sso_of(state: &AppState) -> Result<&Arc<Sso>, ApiError> {
    state.sso.as_ref().ok_or_else(|| ApiError::Malformed {
        status: StatusCode::NOT_FOUND,
        message: "single sign-on is not configured (--oidc-issuer)".into(),
    })
}

fn source(peer: Option<axum::Extension<super::server::Peer>>) -> Option<String> {
    peer.map(|p| p.0 .0.ip().to_string())
}

fn entry<'a>(
    actor: &'a str,
    action: &'a str,
    outcome: &'a str,
    from: Option<&'a str>,
) -> trail::NewEntry<'a> {
    trail::NewEntry {
        actor,
        action,
        target: "session",
        outcome,
        source: from,
    }
}

/// The row of a refused sign-in or sign-out (nothing changed: its own
/// statement).
async fn audit(state: &AppState, actor: &str, action: &str, outcome: &str, from: Option<&str>) {
    if let Err(e) = trail::record(&state.pool, &entry(actor, action, outcome, from)).await {
        tracing::warn!(error = %e, "cannot write the audit row");
    }
}

fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response();
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

#[utoipa::path(
    get, path = "/auth/login", operation_id = "sso_login", tag = "auth",
    responses(
        (status = 303, description = "To the OpenID Connect provider (authorization code with PKCE)"),
        (status = 404, description = "Single sign-on is not configured", body = super::error::ErrorBody),
        (status = 503, description = "The provider cannot be reached", body = super::error::ErrorBody),
    )
)]
/// Starts a sign-in: remembers the state, nonce and PKCE verifier, binds
/// the state to this browser (`cpi_login` cookie) and sends it to the provider.
pub async fn login(State(state): State<AppState>) -> Result<Response, ApiError> {
    let sso = sso_of(&state)?;
    let begun = sso.oidc.begin().await.map_err(|e| {
        tracing::warn!(error = %e, "single sign-on cannot start");
        ApiError::Malformed {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: e.to_string(),
        }
    })?;
    let _ = sessions::delete_expired(&state.pool).await;
    sessions::begin_login(
        &state.pool,
        &sha256_hex(begun.state.expose()),
        begun.nonce.expose(),
        begun.pkce_verifier.expose(),
        LOGIN_TTL,
    )
    .await?;
    let bind = set_cookie(
        LOGIN_COOKIE,
        begun.state.expose(),
        "/auth",
        LOGIN_TTL,
        sso.secure,
    );
    Ok(redirect(&begun.url, &[bind]))
}

/// The provider's answer at `/auth/callback`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CallbackParams {
    /// The authorization code.
    code: Option<String>,
    /// The state sent at `/auth/login`.
    state: Option<String>,
    /// The provider's error (`access_denied`, …).
    error: Option<String>,
}

#[utoipa::path(
    get, path = "/auth/callback", operation_id = "sso_callback", tag = "auth",
    params(CallbackParams),
    responses(
        (status = 303, description = "Signed in: the session cookie is set, back to the console"),
        (status = 401, description = "The sign-in failed (state, code or ID token refused)", body = super::error::ErrorBody),
    )
)]
/// Finishes a sign-in: the state must be this browser's, the code is
/// exchanged and the ID token validated; then a session starts.
pub async fn callback(
    State(state): State<AppState>,
    peer: Option<axum::Extension<super::server::Peer>>,
    headers: HeaderMap,
    Query(q): Query<CallbackParams>,
) -> Result<Response, ApiError> {
    let sso = sso_of(&state)?;
    let from = source(peer);
    match finish(&state, sso, &headers, &q).await {
        Ok((who, id_token)) => {
            let value = random();
            let session = Session {
                subject: who.subject.clone(),
                name: who.name.clone(),
                groups: who.groups.clone(),
                csrf: random(),
                expires_at: chrono::Utc::now()
                    + chrono::Duration::from_std(sso.session_ttl).unwrap_or_default(),
            };
            let actor = principal_of(&session).actor();
            // The session and its audit row commit together.
            let mut tx = state.pool.begin().await?;
            sessions::create(&mut *tx, &sha256_hex(&value), &session, Some(&id_token)).await?;
            trail::record(&mut *tx, &entry(&actor, "sign-in", "303", from.as_deref())).await?;
            tx.commit().await?;
            tracing::info!(%actor, "signed in");
            Ok(redirect(
                "/",
                &[
                    set_cookie(SESSION_COOKIE, &value, "/", sso.session_ttl, sso.secure),
                    set_cookie(LOGIN_COOKIE, "", "/auth", Duration::ZERO, sso.secure),
                ],
            ))
        }
        Err(message) => {
            audit(&state, "anonymous", "sign-in", "401", from.as_deref()).await;
            tracing::warn!(%message, "sign-in refused");
            Err(ApiError::Malformed {
                status: StatusCode::UNAUTHORIZED,
                message: format!("sign-in failed: {message}"),
            })
        }
    }
}

/// The callback's checks: the state is this browser's and still pending,
/// the code exchanges, the ID token validates.
async fn finish(
    state: &AppState,
    sso: &Sso,
    headers: &HeaderMap,
    q: &CallbackParams,
) -> Result<(Identity, crate::secret::Secret), SignInError> {
    if let Some(e) = &q.error {
        return Err(SignInError::Provider(e.chars().take(100).collect()));
    }
    let (Some(code), Some(given)) = (&q.code, &q.state) else {
        return Err(SignInError::NoCode);
    };
    let bound = cookie(headers, LOGIN_COOKIE).unwrap_or("");
    let same: bool = sha256_hex(bound)
        .as_bytes()
        .ct_eq(sha256_hex(given).as_bytes())
        .into();
    if bound.is_empty() || !same {
        return Err(SignInError::NotThisBrowser);
    }
    let Some((nonce, verifier)) = sessions::take_login(&state.pool, &sha256_hex(given)).await?
    else {
        return Err(SignInError::Unknown);
    };
    Ok(sso.oidc.finish(code, &nonce, &verifier).await?)
}

/// Why a sign-in's callback was refused (said in the 401's message; never
/// a code, a state or a token).
#[derive(Debug, thiserror::Error)]
enum SignInError {
    /// The provider sent the browser back with an error (its first 100 characters).
    #[error("the provider answered {0:?}")]
    Provider(String),
    /// The callback lacks the code or the state.
    #[error("no code or state")]
    NoCode,
    /// The state is not the one this browser's login cookie is bound to.
    #[error("the state is not this browser's sign-in")]
    NotThisBrowser,
    /// No pending sign-in has this state (taken already, or expired).
    #[error("the sign-in is unknown or has expired")]
    Unknown,
    /// The pending sign-in could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The code exchange or the ID token failed.
    #[error(transparent)]
    Oidc(#[from] super::oidc::OidcError),
}

#[utoipa::path(
    post, path = "/auth/logout", operation_id = "sso_logout", tag = "auth",
    responses(
        (status = 200, description = "Signed out here (the session ended, its cookie removed); the provider signs users out too: send the browser to `end_session_url` (RP-initiated logout, with `id_token_hint` and `post_logout_redirect_uri` back to the console)", body = LoggedOut),
        (status = 204, description = "Signed out: the session ended and its cookie removed (no session, or a provider without `end_session_endpoint`)"),
        (status = 403, description = "No X-CSRF-Token, or not the session's", body = super::error::ErrorBody),
    )
)]
/// Ends the session (CSRF token required) and removes its cookie; says
/// where to sign out at the provider too, when it advertises where.
pub async fn logout(
    State(state): State<AppState>,
    peer: Option<axum::Extension<super::server::Peer>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let sso = sso_of(&state)?;
    let from = source(peer);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Some((key, session)) = session_of(&state, &headers).await? {
        let actor = principal_of(&session).actor();
        if let Err(r) = csrf_check(&method, &headers, &session.csrf, &sso.origin) {
            audit(&state, &actor, "sign-out", "403", from.as_deref()).await;
            return Err(ApiError::Forbidden(r.to_string()));
        }
        // The session's end and its audit row commit together.
        let mut tx = state.pool.begin().await?;
        let id_token = sessions::delete(&mut *tx, &key).await?.flatten();
        let back = format!("{}/", sso.origin);
        let end = match sso
            .oidc
            .logout_url(id_token.as_ref().map(|t| t.expose()), &back)
            .await
        {
            Ok(end) => end,
            // Signed out here all the same; the provider's session stays.
            Err(e) => {
                tracing::warn!(error = %e, "cannot sign out at the provider");
                None
            }
        };
        let outcome = if end.is_some() { "200" } else { "204" };
        trail::record(
            &mut *tx,
            &entry(&actor, "sign-out", outcome, from.as_deref()),
        )
        .await?;
        tx.commit().await?;
        if let Some(url) = end {
            resp = Json(LoggedOut {
                end_session_url: url,
            })
            .into_response();
        }
    }
    let clear = set_cookie(SESSION_COOKIE, "", "/", Duration::ZERO, sso.secure);
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// `POST /auth/logout` when the provider signs users out too.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoggedOut {
    /// The provider's `end_session_endpoint` with `id_token_hint`,
    /// `client_id` and `post_logout_redirect_uri` (the console): where the
    /// console sends the browser next.
    pub end_session_url: String,
}

/// `GET /auth/me`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    /// Whether single sign-on is configured (the console shows Sign in).
    pub sso: bool,
    /// Whether the caller is signed in by the session cookie.
    pub signed_in: bool,
    /// The actor of the audit trail (`user:alice@example.com`, `token:ci`, `anonymous`).
    pub actor: String,
    /// The signed-in user's groups.
    pub groups: Vec<String>,
    /// The session's anti-CSRF token, to send as `X-CSRF-Token` (signed in only).
    pub csrf_token: Option<String>,
    /// The permissions the caller holds on at least one project (`audit`:
    /// on every project, the only place it is asked).
    pub permissions: Vec<String>,
    /// The grants that apply to the caller.
    pub grants: Vec<Grant>,
}

/// One role the caller holds, and where.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Grant {
    /// The role.
    pub role: String,
    /// Project names or globs.
    pub projects: Vec<String>,
    /// Connections named beside the projects'.
    pub connections: Vec<String>,
}

#[utoipa::path(
    get, path = "/auth/me", operation_id = "whoami", tag = "auth",
    responses(
        (status = 200, description = "Who the caller is (session cookie, bearer token or nobody) and what they may do", body = Me),
        (status = 401, description = "An unknown or expired bearer token", body = super::error::ErrorBody),
    )
)]
/// Who the caller is and what they may do (the console shows and hides by it).
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Me>, ApiError> {
    let (principal, session) = caller(&state, &headers).await?;
    let policy = state.policy();
    // `audit` is only ever asked on every project (`GET /audit`): said
    // only to whom holds it there, so the console shows its page to them.
    let permissions = Permission::ALL
        .iter()
        .filter(|p| {
            let on = match p {
                Permission::Audit => Target::Everything,
                _ => Target::Any,
            };
            crate::access::allows(&policy, &principal, **p, &on).is_allowed()
        })
        .map(|p| p.as_str().to_string())
        .collect();
    let grants = policy
        .roles_of(&principal)
        .into_iter()
        .map(|(role, b)| Grant {
            role: role.as_str().to_string(),
            projects: b.projects.clone(),
            connections: b.connections.clone(),
        })
        .collect();
    let groups = match &principal {
        Principal::User { groups, .. } => groups.clone(),
        _ => Vec::new(),
    };
    Ok(Json(Me {
        sso: state.sso.is_some(),
        signed_in: session.is_some(),
        actor: principal.actor(),
        groups,
        csrf_token: session.map(|s| s.csrf),
        permissions,
        grants,
    }))
}
