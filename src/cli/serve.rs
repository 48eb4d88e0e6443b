//! `cpi serve`: the HTTP API alone, without reconcile or imports (for
//! tests, API checks and frontend-only deployments). `cpi run --listen`
//! serves the same API beside the daemon.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::args::{ApiArgs, Global};
use super::context::{management_pool, signal};
use crate::api::access_sync::AccessSync;
use crate::api::{self, auth, AppState};
use crate::metrics::Health;
use crate::store;

/// Serves the API until Ctrl-C or SIGTERM, then lets requests in flight finish.
pub async fn serve(g: &Global, a: &ApiArgs) -> Result<ExitCode> {
    // Arguments first: a bad token file fails before anything is touched.
    let token = a
        .api_token_file
        .as_deref()
        .map(auth::load_token)
        .transpose()?;
    a.http.check_tls()?;
    let sso = a.http.sso()?;
    let pool = management_pool(g).await?;
    store::migrate(&pool).await?;
    // Before the port is bound and the process row written: a SIGTERM as
    // soon as the port answers stops it cleanly, its row deleted (the
    // default action killed it, and the row held back key rotations for
    // 30 s; CI saw `cpi rekey` refused so).
    let signal = signal();
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let (left, leave) = tokio::sync::watch::channel(false);
    let presence = tokio::spawn(store::processes::keep(
        pool.clone(),
        store::processes::Me::this("serve"),
        leave.clone(),
    ));
    let mut state = AppState::new(pool.clone(), token, Arc::new(Health::new()));
    // The tokens and bindings the manifests declared, as applied: loaded
    // before the first request, then followed.
    let access = AccessSync::new(pool, state.access.clone());
    access
        .refresh()
        .await
        .context("cannot read the access rules (ApiToken, RoleBinding)")?;
    tokio::spawn(access.run(leave));
    state.inbox_roots = Arc::new(a.roots.inbox_roots.clone());
    state.http = a.http.settings();
    state.sso = sso;
    let shutdown = async move {
        signal.await;
        tracing::info!("shutting down: finishing the requests in flight");
    };
    let served = api::serve(listener, state, shutdown).await;
    let _ = left.send(true);
    let _ = presence.await;
    served?;
    tracing::info!("API stopped");
    Ok(ExitCode::SUCCESS)
}
