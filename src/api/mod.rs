//! The HTTP API (DESIGN §7): the connection API of the decision record,
//! projects, import jobs, health and metrics.
//!
//! [`app`] builds the router from the state alone, so tests can drive it
//! without a socket; [`serve`] takes its listener and its shutdown future, so
//! tests bind port 0 and stop it at will, and the daemon serves the same
//! router from `cpi run --listen`.
//!
//! Rows that a reconciler manages (`managed_by` set) are read-only here:
//! git is their source of truth, and a write answers 409 naming the
//! manifest. A bearer token guards writes, connection tests and every
//! response carrying a `database_url`.

pub mod access_sync;
mod audit;
pub mod auth;
mod check;
mod connections;
mod docs;
mod error;
mod events;
mod extract;
mod freshness;
mod guard;
pub mod hooks;
pub mod https;
mod jobs;
pub mod oidc;
mod pauses;
pub mod permissions;
mod projects;
mod rejects;
mod routes;
mod runs;
pub mod server;
pub mod session;
pub mod sso;
mod state;
mod stats;
mod system;
mod unmanaged;

use std::future::Future;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;

pub use error::{ApiError, ErrorBody};
pub use extract::{IdPath, JsonBody, Page, QueryParams, DEFAULT_PAGE, MAX_DESCRIPTION, MAX_PAGE};
pub use routes::openapi;
pub use state::{Access, AccessCell, AppState, Wake, CONNECTION_TEST_TIMEOUT};

/// The API as an axum router: every route, the 404 fallback, the request
/// log, the request timeout, the headers every response carries, and CORS
/// when origins are configured.
pub fn app(state: AppState) -> Router {
    use axum::http::{header, HeaderValue};
    use tower_http::set_header::SetResponseHeaderLayer;
    let (router, _) = routes::routes().split_for_parts();
    let http = state.http.clone();
    // route_layer: the guard sees each route's template (MatchedPath), and
    // the console's assets and the 404 fallback stay open.
    let router = router
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guard::enforce,
        ))
        .merge(crate::console::router())
        .fallback(no_route)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            http.request_timeout,
        ))
        // API responses may hold URLs with passwords: never cached. A route
        // that wants caching (static assets) sets its own Cache-Control.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(middleware::from_fn(log_request));
    let router = match server::cors(&http.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` completes, then lets the
/// requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    if state.token.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "the API listens on a non-loopback address without an API token: reads are open to \
             the network and writes answer 403; give --api-token-file to enable writes"
        );
    }
    tracing::info!(%addr, "API listening");
    let http = state.http.clone();
    server::serve(listener, app(state), &http, shutdown).await
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::Malformed {
        status: StatusCode::NOT_FOUND,
        message: format!("no route for {method} {}", uri.path()),
    }
}

/// One line per request: method, path, status, duration. Never headers,
/// bodies or query strings, which may hold the token or a URL.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_millis() as u64;
    if method == Method::GET || method == Method::HEAD {
        tracing::debug!(%method, %path, status, ms, "request");
    } else {
        tracing::info!(%method, %path, status, ms, "request");
    }
    resp
}
