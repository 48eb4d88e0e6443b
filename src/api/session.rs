//! The console's session cookie and CSRF rule, pure: how the cookie is
//! written and read, and when a cookie-made request passes. The routes
//! that start and end sessions are [`super::sso`]'s.
//!
//! CSRF: a request that is authenticated by the cookie and is not a read
//! must carry the session's token in `X-CSRF-Token` (the console reads it
//! from `/auth/me`; another site can neither read it nor set the header
//! without CORS, which never allows credentials), and an `Origin` header,
//! when sent, must be this server's. Requests with a bearer token carry no
//! cookie authority and need neither.

use std::time::Duration;

use axum::http::header::{self, HeaderMap};
use axum::http::Method;
use subtle::ConstantTimeEq;

use super::oidc::Oidc;
use crate::access::token::sha256_hex;

/// The session cookie.
pub const SESSION_COOKIE: &str = "cpi_session";
/// The cookie binding a sign-in to the browser that began it.
pub const LOGIN_COOKIE: &str = "cpi_login";
/// The header that carries the session's anti-CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a sign-in may take between `/auth/login` and `/auth/callback`.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// `--session-ttl`'s default.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// Single sign-on as configured.
#[derive(Debug)]
pub struct Sso {
    /// The relying party.
    pub oidc: Oidc,
    /// `--public-url`'s origin (`https://cpi.example.com`), what `Origin` must be.
    pub origin: String,
    /// Whether cookies get `Secure` (HTTPS on the listener or an https public URL).
    pub secure: bool,
    /// How long a session lasts.
    pub session_ttl: Duration,
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Path`, `Max-Age`,
/// and `Secure` when `secure`. A zero `max_age` removes the cookie.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: Duration, secure: bool) -> String {
    let mut c = format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Lax",
        max_age.as_secs()
    );
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// Why a cookie-authenticated action was refused as a possible CSRF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsrfRefusal {
    /// No `X-CSRF-Token`, or not the session's.
    Token,
    /// An `Origin` that is not this server's.
    Origin(String),
}

impl std::fmt::Display for CsrfRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CsrfRefusal::Token => write!(
                f,
                "a request signed in by the session cookie must send the session's {CSRF_HEADER} header (GET /auth/me gives it)"
            ),
            CsrfRefusal::Origin(o) => {
                write!(f, "cross-site request from origin {o:?} refused")
            }
        }
    }
}

/// Whether a request with `method` and `headers`, signed in by a session
/// whose token is `csrf`, passes the CSRF checks. Reads always do.
pub fn csrf_check(
    method: &Method,
    headers: &HeaderMap,
    csrf: &str,
    origin: &str,
) -> Result<(), CsrfRefusal> {
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        return Ok(());
    }
    if let Some(o) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        if o != origin {
            return Err(CsrfRefusal::Origin(o.chars().take(200).collect()));
        }
    }
    let given = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok: bool = sha256_hex(given)
        .as_bytes()
        .ct_eq(sha256_hex(csrf).as_bytes())
        .into();
    if given.is_empty() || !ok {
        return Err(CsrfRefusal::Token);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cookies_are_found_among_others() {
        let h = headers(&[("cookie", "a=1; cpi_session=abc"), ("cookie", "b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "cpi"), None);
    }

    #[test]
    fn the_session_cookie_is_http_only_lax_and_secure_under_https() {
        let c = set_cookie(SESSION_COOKIE, "v", "/", DEFAULT_SESSION_TTL, true);
        assert_eq!(
            c,
            "cpi_session=v; Path=/; Max-Age=28800; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(!set_cookie(SESSION_COOKIE, "v", "/", Duration::ZERO, false).contains("Secure"));
    }

    #[test]
    fn csrf_needs_the_token_on_actions_and_a_same_origin() {
        let origin = "https://cpi.example.com";
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(csrf_check(&get, &headers(&[]), "t0k", origin), Ok(()));
        assert_eq!(
            csrf_check(&post, &headers(&[]), "t0k", origin),
            Err(CsrfRefusal::Token)
        );
        assert_eq!(
            csrf_check(&post, &headers(&[(CSRF_HEADER, "other")]), "t0k", origin),
            Err(CsrfRefusal::Token)
        );
        assert_eq!(
            csrf_check(&post, &headers(&[(CSRF_HEADER, "t0k")]), "t0k", origin),
            Ok(())
        );
        assert_eq!(
            csrf_check(
                &post,
                &headers(&[(CSRF_HEADER, "t0k"), ("origin", origin)]),
                "t0k",
                origin
            ),
            Ok(())
        );
        assert!(matches!(
            csrf_check(
                &Method::DELETE,
                &headers(&[(CSRF_HEADER, "t0k"), ("origin", "https://evil.example")]),
                "t0k",
                origin
            ),
            Err(CsrfRefusal::Origin(_))
        ));
    }
}
