//! `cpi run`: turns the arguments into [`daemon::Settings`], binds the
//! API's listener, waits for the management database and runs the daemon
//! until SIGTERM or SIGINT (then exits 0, also while still waiting for the
//! database).

use std::process::ExitCode;

use anyhow::Result;
use tokio::sync::watch;

use super::args::{Global, RunArgs};
use super::context::{management_url, signal};
use crate::api::auth;
use crate::daemon;
use crate::daemon::watch::Backend;

/// The daemon's settings from the global options and `cpi run`'s arguments
/// (the API token file is read here: a bad one fails before anything runs).
pub fn settings(g: &Global, a: &RunArgs) -> Result<daemon::Settings> {
    let api_token = a
        .api_token_file
        .as_deref()
        .map(auth::load_token)
        .transpose()?;
    a.http.check_tls()?;
    Ok(daemon::Settings {
        manifests: g.manifests.clone(),
        secrets_dir: g.secrets_dir.clone(),
        owner: g.owner.clone(),
        interval: a.interval,
        rescan: a.rescan,
        backend: if a.poll {
            Backend::Poll(a.poll_interval)
        } else {
            Backend::Native
        },
        workers: a.workers,
        settle: a.settle,
        lease: a.lease,
        shutdown_timeout: a.shutdown_timeout,
        adopt: a.guards.adopt,
        max_delete: a.guards.max_delete,
        allow_delete: a.guards.allow_delete,
        api_token,
        worker_prefix: daemon::default_worker_prefix(),
        inbox_roots: a.roots.inbox_roots.clone(),
        http: a.http.settings(),
        sso: a.http.sso()?,
        retention: a.retention,
        freshness_interval: a.freshness_interval,
        inotify_watch_cap: a.inotify_watch_cap,
        console_url: a.console_url.clone(),
    })
}

/// `cpi run`.
pub async fn run(g: &Global, a: &RunArgs) -> Result<ExitCode> {
    let url = management_url(g)?;
    // Arguments first: a bad token file or a taken port fails before anything runs.
    let settings = settings(g, a)?;
    let listener = match &a.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?,
        ),
        None => None,
    };
    // One signal, two waiters: the wait for the database, then the daemon.
    let (stop_tx, stop) = watch::channel(false);
    let signal = signal();
    tokio::spawn(async move {
        signal.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut stop: watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let Some(pool) = daemon::connect_waiting(&url, stopped(stop.clone())).await else {
        return Ok(ExitCode::SUCCESS);
    };
    daemon::run(settings, pool, listener, stopped(stop)).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn run_defaults_are_the_daemon_defaults() {
        // `daemon::Settings::new` repeats clap's defaults for tests: they must agree.
        let cli = Cli::try_parse_from(["cpi", "run"]).unwrap();
        let Command::Run(a) = &cli.command else {
            panic!("not run: {:?}", cli.command)
        };
        let from_cli = settings(&cli.global, a).unwrap();
        let mut defaults = daemon::Settings::new(from_cli.manifests.clone());
        // Environment-dependent (CPI_OWNER, CPI_SECRETS_DIR): not defaults of the daemon's.
        defaults.owner = from_cli.owner.clone();
        defaults.secrets_dir = from_cli.secrets_dir.clone();
        assert_eq!(format!("{from_cli:?}"), format!("{defaults:?}"));
    }
}
