//! `cpi serve`: the HTTP API alone, without reconcile or imports (for
//! tests, API checks and frontend-only deployments). `cpi run --listen`
//! serves the same API beside the daemon, with the same [`ApiArgs`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use super::{auth, serve, AppState};
use crate::cli::{management_pool, Global};
use crate::metrics::Health;
use crate::store;

#[derive(Debug, Args, Clone)]
pub struct ApiArgs {
    /// Address the HTTP API listens on (host:port).
    #[arg(long, env = "CPI_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// A file holding the API token (surrounding whitespace trimmed). Without
    /// one, writes and every response with a database URL answer 403.
    #[arg(long, env = "CPI_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
}

pub async fn run(g: &Global, a: &ApiArgs) -> Result<ExitCode> {
    // Arguments first: a bad token file fails before anything is touched.
    let token = a
        .api_token_file
        .as_deref()
        .map(auth::load_token)
        .transpose()?;
    let pool = management_pool(g).await?;
    store::migrate(&pool).await?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let state = AppState::new(pool, token, Arc::new(Health::new()));
    serve(listener, state, shutdown_signal()).await?;
    tracing::info!("API stopped");
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM (what a container runtime sends).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
