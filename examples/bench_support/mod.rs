//! What the benchmarks that drive the real binary share: finding it, and a
//! fresh database on the server they measure against.

use std::path::{Path, PathBuf};

use sqlx::{Connection, PgConnection};

/// The release `cpi` beside this example's own folder.
pub fn release_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("cpi");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release` first",
        bin.display()
    );
    bin
}

/// A database made for one benchmark run.
pub struct BenchDb {
    /// Its URL.
    pub url: String,
    name: String,
    admin: PgConnection,
}

impl BenchDb {
    /// Drops the database (every session on it is ended).
    pub async fn drop_db(mut self) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut self.admin)
        .await
        .unwrap();
    }
}

/// Creates a database named `PREFIX_<uuid>` on `CPI_BENCH_ADMIN_URL`
/// (default: the local server).
pub async fn fresh_database(prefix: &str) -> BenchDb {
    let admin_url = std::env::var("CPI_BENCH_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    BenchDb { url, name, admin }
}
