//! Shared test support: a fresh database per test, dropped afterwards, and
#![allow(dead_code)] // not every test module uses every helper
//! running the real `cpi` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::{Connection, PgConnection};

/// The server every test database is created on: `CPI_TEST_ADMIN_URL`,
/// else the local server on 5432, else (none reachable, or
/// `CPI_TEST_EMBEDDED` set) cpi's embedded PostgreSQL under the target dir.
pub fn admin_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("CPI_TEST_ADMIN_URL") {
            return url;
        }
        let local = std::net::SocketAddr::from(([127, 0, 0, 1], 5432));
        let reachable =
            std::net::TcpStream::connect_timeout(&local, std::time::Duration::from_secs(1)).is_ok();
        if reachable && std::env::var_os("CPI_TEST_EMBEDDED").is_none() {
            return "postgres://postgres@127.0.0.1:5432/postgres".to_string();
        }
        embedded_admin_url()
    })
    .clone()
}

/// Starts (or joins) the test suite's embedded instance. nextest runs one
/// process per test: the instance outlives each of them instead of
/// restarting for every test (stop it with `pg_ctl stop -D
/// target/tmp/cpi-test-pg/embedded/data`, as the `postgres` user when root).
fn embedded_admin_url() -> String {
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let state = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cpi-test-pg");
            let port = std::env::var("CPI_TEST_EMBEDDED_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(54339);
            let e = cpi::embedded::Embedded::start(&state, port)
                .await
                .expect("no PostgreSQL on 127.0.0.1:5432 and the embedded one did not start");
            let url = e.database_url("postgres").expose().to_string();
            std::mem::forget(e);
            url
        })
    })
    .join()
    .unwrap()
}

/// A database created for one test and dropped when it goes out of scope.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let name = format!("cpi_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("admin connection");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create test database");
        TestDb { name }
    }

    pub fn url(&self) -> String {
        let admin = admin_url();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        format!("{base}/{}", self.name)
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url())
            .await
            .expect("test database connection")
    }

    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url())
            .await
            .expect("test database pool")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut admin)
                            .await;
                }
            });
        })
        .join();
    }
}

/// The `cpi` binary under test, with no CPI_* variable inherited.
pub fn cpi_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cpi"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CPI_") || k == "DATABASE_URL" {
            c.env_remove(k);
        }
    }
    c
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `cpi ARGS` (blocking; call from `spawn_blocking` in async tests if it matters).
pub fn cpi(args: &[&str]) -> Run {
    cpi_command().args(args).output().expect("run cpi").into()
}

/// Writes `text` to `dir/rel`, creating folders.
pub fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}
