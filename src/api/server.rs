//! The API's HTTP server: axum's router on hyper's HTTP/1.1 connections,
//! with the limits a public listener needs. A connection cap (a semaphore:
//! at the cap no new connection is accepted, so file descriptors stay
//! bounded), a header read timeout (a socket that sends nothing, or
//! dribbles its headers, or idles between requests, is closed), and a
//! per-request timeout (answered 408). With `--tls-cert-file` the same
//! connections speak HTTPS ([`super::https`]); the TLS handshake must end
//! within the header timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{watch, Semaphore};

/// The server's limits (`--max-connections`, `--header-timeout`,
/// `--request-timeout`, `--cors-origin`) and its certificate
/// (`--tls-cert-file`, `--tls-key-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A request's headers must arrive within this (also the idle time
    /// allowed between requests on a kept-alive connection).
    pub header_timeout: Duration,
    /// A request must be answered within this, or it gets 408.
    pub request_timeout: Duration,
    /// Origins allowed by CORS; none: no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// `--anonymous`; the library's default is viewer (the API as it was
    /// before roles), the command line's is [`crate::access::Anonymous::Auto`].
    pub anonymous: crate::access::Anonymous,
    /// HTTPS with these files; none: plain HTTP.
    pub tls: Option<super::https::TlsFiles>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            cors_origins: Vec::new(),
            anonymous: crate::access::Anonymous::Viewer,
            tls: None,
        }
    }
}

/// `--max-connections`' default: above what a burst of honest clients
/// needs, below common file descriptor limits once raised.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// File descriptors kept for everything but API connections (database
/// pools, inboxes, the watcher).
const RESERVED_FDS: u64 = 256;

/// Raises the soft limit of open files to the hard limit (as Go's runtime
/// does) and returns the connection cap that fits in it.
fn fitting_cap(wanted: usize) -> usize {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    let soft = unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return wanted;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    };
    let room = soft.saturating_sub(RESERVED_FDS).max(16);
    wanted.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// The address a request came from (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// Serves `app` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish (idle connections are closed at once).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: &HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = fitting_cap(limits.max_connections.max(1));
    if cap < limits.max_connections {
        tracing::warn!(
            wanted = limits.max_connections,
            cap,
            "--max-connections lowered to fit the open files limit"
        );
    }
    let acceptor = match &limits.tls {
        Some(files) => Some(super::https::acceptor(files).map_err(std::io::Error::other)?),
        None => None,
    };
    let slots = Arc::new(Semaphore::new(cap));
    let (stop_tx, stop) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait for a connection to close.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The peer's address, for the audit trail's `source`.
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(Peer(peer))));
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let header_timeout = limits.header_timeout;
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => serve_connection(&builder, stream, service, stop).await,
                Some(acceptor) => {
                    let Some(tls) =
                        super::https::handshake(&acceptor, stream, header_timeout).await
                    else {
                        return;
                    };
                    serve_connection(&builder, tls, service, stop).await
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot: all slots back means all are closed.
    let _ = slots.acquire_many(cap as u32).await;
    Ok(())
}

/// Serves one connection (plain or TLS) until it closes, or gracefully
/// once `stop` turns true.
async fn serve_connection<I, S>(
    builder: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let stopping = tokio::select! {
        _ = conn.as_mut() => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    if stopping {
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}

/// The CORS layer for `origins` (`--cors-origin`); `None` without any.
/// Credentials are not allowed: the token travels in a header the
/// allowlisted page sets itself.
pub fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(Duration::from_secs(600)),
    )
}
