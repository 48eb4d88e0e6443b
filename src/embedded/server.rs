//! The running server this process uses: started or joined under a lock,
//! and stopped by the last cpi process that lets go of it.

use std::fs::{DirBuilder, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{failed, EmbeddedError};
use super::host::{check_reachable, find_binaries, lock_file, RunAs};
use super::names::{DATABASE, FALLBACK_ROOT, SYSTEM_USER, USER};
use crate::secret::{self, Secret};

/// A running embedded server, used by this process; dropping it stops the
/// server unless another cpi process still uses it.
#[derive(Debug)]
pub struct Embedded {
    pub(super) dir: PathBuf,
    pub(super) bin: PathBuf,
    pub(super) run_as: RunAs,
    pub(super) port: u16,
    url: Secret,
    /// Our shared lock on `users.lock`, held for as long as we use the server.
    users: Option<File>,
    /// Whether this process started the server (rather than joined a running one).
    pub started: bool,
}

impl Embedded {
    /// The management database's URL.
    pub fn url(&self) -> &Secret {
        &self.url
    }

    /// The TCP port the instance listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A database of the instance (e.g. [`SCRATCH_DATABASE`](super::names::SCRATCH_DATABASE)).
    pub fn database_url(&self, database: &str) -> Secret {
        let mut u = url::Url::parse(self.url.expose()).expect("our own URL parses");
        u.set_path(database);
        Secret::new(u.to_string())
    }

    pub(super) fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts (or attaches to) the instance under `state_dir/embedded`.
    pub async fn start(state_dir: &Path, port: u16) -> Result<Embedded, EmbeddedError> {
        let bin = find_binaries(
            std::env::var_os("CPI_POSTGRES_BIN")
                .as_deref()
                .map(Path::new),
            std::env::var_os("PATH").as_deref(),
            Path::new(FALLBACK_ROOT),
        )
        .ok_or(EmbeddedError::NoBinaries)?;
        let run_as = RunAs::detect()?;
        let dir = std::path::absolute(state_dir)
            .map_err(|e| failed(state_dir, e.to_string()))?
            .join("embedded");
        // The state dir gets the default mode (the server user, as root,
        // must pass through it); the instance's own folder is private.
        std::fs::create_dir_all(state_dir)
            .map_err(|e| failed(&dir, format!("cannot create {}: {e}", state_dir.display())))?;
        if !dir.exists() {
            DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| failed(&dir, format!("cannot create the folder: {e}")))?;
        }
        run_as.own(&dir).map_err(|e| {
            failed(
                &dir,
                format!("cannot hand the folder to {SYSTEM_USER}: {e}"),
            )
        })?;
        if run_as.0.is_some() {
            check_reachable(&dir, run_as)?;
        }
        let start_lock = lock_file(&dir.join("start.lock"))?;
        let lock = tokio::task::spawn_blocking(move || start_lock.lock().map(|()| start_lock))
            .await
            .map_err(|e| failed(&dir, e.to_string()))?
            .map_err(|e| failed(&dir, format!("cannot lock start.lock: {e}")))?;
        let users = lock_file(&dir.join("users.lock"))?;
        users
            .lock_shared()
            .map_err(|e| failed(&dir, format!("cannot lock users.lock: {e}")))?;
        let mut me = Embedded {
            dir: dir.clone(),
            bin,
            run_as,
            port,
            url: Secret::new(String::new()),
            users: Some(users),
            started: false,
        };
        // On error `me` drops here and stops a server only it was using.
        let result = me.bring_up().await;
        drop(lock);
        result.map(|()| me)
    }

    async fn bring_up(&mut self) -> Result<(), EmbeddedError> {
        let data = self.data();
        let password_path = self.dir.join("password");
        if !data.join("PG_VERSION").exists() {
            self.init(&password_path)?;
        }
        let password = std::fs::read_to_string(&password_path).map_err(|e| {
            failed(
                &self.dir,
                format!(
                    "cannot read {}: {e}; without it the instance cannot be used: remove {} to start over with an empty one",
                    password_path.display(),
                    self.dir.display()
                ),
            )
        })?;
        let password = Secret::new(password.trim());
        secret::register(&password);
        match self.running_port() {
            Some(port) => {
                if port != self.port {
                    tracing::info!(
                        port,
                        "the embedded PostgreSQL already runs on another port; using it"
                    );
                }
                self.port = port;
            }
            None => {
                self.pg_ctl_start()?;
                self.started = true;
            }
        }
        let mut url = url::Url::parse(&format!(
            "postgres://{USER}@127.0.0.1:{}/{DATABASE}",
            self.port
        ))
        .expect("a static URL parses");
        let _ = url.set_password(Some(password.expose()));
        self.url = Secret::new(url.to_string());
        secret::register(&self.url);
        self.create_databases().await?;
        tracing::info!(
            dir = %self.dir.display(),
            port = self.port,
            "no management database given: using the embedded PostgreSQL ({}); give --database-url for another server",
            if self.started { "started" } else { "already running" }
        );
        Ok(())
    }

    /// `pg_ctl ACTION -D <data>`, run as the server's user.
    pub(super) fn pg_ctl(&self, action: &str) -> Command {
        let mut c = self.run_as.command(self.bin.join("pg_ctl"), &self.dir);
        c.arg(action).arg("-D").arg(self.data());
        c
    }

    /// Stops the server if no other cpi process uses it (see the package doc).
    fn release(&mut self) {
        let Some(users) = self.users.take() else {
            return;
        };
        let Ok(start_lock) = lock_file(&self.dir.join("start.lock")) else {
            return;
        };
        if start_lock.lock().is_err() {
            return;
        }
        drop(users);
        let Ok(probe) = lock_file(&self.dir.join("users.lock")) else {
            return;
        };
        if probe.try_lock().is_err() {
            tracing::debug!("the embedded PostgreSQL is still used by another cpi process");
            return;
        }
        if !self.data().join("postmaster.pid").exists() {
            return; // never started (a failed first run)
        }
        let out = self
            .pg_ctl("stop")
            .args(["-m", "fast", "-w", "-t", "60"])
            .output();
        match out {
            Ok(o) if o.status.success() => tracing::info!("stopped the embedded PostgreSQL"),
            Ok(o) => tracing::warn!(
                "could not stop the embedded PostgreSQL ({}): {} {}",
                o.status,
                String::from_utf8_lossy(&o.stdout).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => tracing::warn!("could not run pg_ctl stop: {e}"),
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.release();
    }
}
