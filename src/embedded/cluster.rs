//! The cluster itself: created on first use, started with `pg_ctl`, and
//! given its databases.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use sqlx::{Connection, PgConnection};

use super::error::{failed, EmbeddedError};
use super::host::pid_file_port;
use super::names::{DATABASE, SCRATCH_DATABASE, USER};
use super::server::Embedded;
use crate::secret::{self, Secret};

impl Embedded {
    pub(super) fn init(&self, password_path: &Path) -> Result<(), EmbeddedError> {
        let data = self.data();
        if data.exists()
            && std::fs::read_dir(&data)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            return Err(failed(
                &self.dir,
                format!(
                    "{} is not empty but holds no PostgreSQL cluster; move it away",
                    data.display()
                ),
            ));
        }
        tracing::info!(dir = %self.dir.display(), "creating the embedded PostgreSQL (first run)");
        // Two v4 UUIDs: 244 bits from the operating system's generator.
        let password = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        crate::output::write_secret(password_path, &Secret::new(password.clone()))
            .map_err(|e| failed(&self.dir, e.to_string()))?;
        // initdb reads the password from a file the server user can read;
        // it lives only while initdb runs.
        let pwfile = self.dir.join("initdb.pw");
        crate::output::write_secret(&pwfile, &Secret::new(password))
            .map_err(|e| failed(&self.dir, e.to_string()))?;
        let _ = self.run_as.own(&pwfile);
        DirBuilder::new()
            .mode(0o700)
            .create(&data)
            .map_err(|e| failed(&self.dir, format!("cannot create {}: {e}", data.display())))?;
        let _ = self.run_as.own(&data);
        let out = self
            .run_as
            .command(self.bin.join("initdb"), &self.dir)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output();
        let _ = std::fs::remove_file(&pwfile);
        let out = out.map_err(|e| failed(&self.dir, format!("cannot run initdb: {e}")))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&data);
            return Err(failed(
                &self.dir,
                format!(
                    "initdb failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        // Only 127.0.0.1, and the socket inside the data dir (paths are
        // relative to it, which keeps the socket path short): nothing is
        // shared with a system PostgreSQL.
        let conf = data.join("postgresql.conf");
        let mut f = OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| failed(&self.dir, format!("cannot open {}: {e}", conf.display())))?;
        writeln!(
            f,
            "\n# cpi embedded\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '.'\nmax_connections = 50\nshared_buffers = 32MB\n"
        )
        .map_err(|e| failed(&self.dir, format!("cannot write {}: {e}", conf.display())))?;
        Ok(())
    }

    /// The port of the server running on our data dir, if one is.
    pub(super) fn running_port(&self) -> Option<u16> {
        let status = self.pg_ctl("status").output().ok()?;
        if !status.status.success() {
            return None;
        }
        pid_file_port(&std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?)
    }

    pub(super) fn pg_ctl_start(&self) -> Result<(), EmbeddedError> {
        let log = self.dir.join("server.log");
        if !log.exists() {
            let _ = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&log);
        }
        let _ = self.run_as.own(&log);
        let out = self
            .pg_ctl("start")
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {}", self.port))
            .output()
            .map_err(|e| failed(&self.dir, format!("cannot run pg_ctl: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let mut message = format!(
            "the server did not start (log {}): {}",
            log.display(),
            tail.join(" | ")
        );
        if text.contains("Address already in use") {
            message.push_str(&format!(
                "; port {} is taken: choose another with --embedded-port",
                self.port
            ));
        }
        Err(failed(&self.dir, message))
    }

    pub(super) async fn create_databases(&self) -> Result<(), EmbeddedError> {
        let admin = self.database_url("postgres");
        let opts =
            crate::tls::connect_options(&admin).map_err(|e| failed(&self.dir, e.to_string()))?;
        let mut conn =
            tokio::time::timeout(Duration::from_secs(30), PgConnection::connect_with(&opts))
                .await
                .map_err(|_| failed(&self.dir, "timed out connecting to the embedded server"))?
                .map_err(|e| failed(&self.dir, secret::scrub_known(&e.to_string())))?;
        for db in [DATABASE, SCRATCH_DATABASE] {
            let (exists,): (bool,) =
                sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(db)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| failed(&self.dir, e.to_string()))?;
            if !exists {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE {}",
                    crate::config::quote_ident(db)
                )))
                .execute(&mut conn)
                .await
                .map_err(|e| failed(&self.dir, e.to_string()))?;
            }
        }
        let _ = conn.close().await;
        Ok(())
    }
}
