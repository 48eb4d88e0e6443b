//! A management + target database (one fresh test database holds both), a
//! project `p` whose connection points at it, and an inbox folder.

use std::path::{Path, PathBuf};

use cpi::import::{self, ImportError, JobOutcome};
use cpi::store::jobs::{self, JobStatus};
use serde_json::{json, Value};
use sqlx::PgPool;

use super::TestDb;

pub struct Env {
    pub db: TestDb,
    pub pool: PgPool,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// Project `p` with these `defaults` (and no `tables`).
    pub async fn new(defaults: Value) -> Env {
        Env::with_config(|inbox| json!({"name": "p", "inbox": inbox, "defaults": defaults})).await
    }

    pub async fn with_config(config: impl FnOnce(&str) -> Value) -> Env {
        let db = TestDb::new().await;
        let pool = db.pool().await;
        cpi::store::migrate(&pool).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path().to_str().unwrap());
        let env = Env { db, pool, dir };
        env.set_project(config, Some(&env.db.url())).await;
        env
    }

    /// (Re)creates project `p` and connection `c` (None: no connection).
    pub async fn set_project(&self, config: Value, url: Option<&str>) {
        self.exec("DELETE FROM cpi_projects").await;
        self.exec("DELETE FROM cpi_connections").await;
        let conn: Option<uuid::Uuid> = match url {
            Some(u) => Some(
                sqlx::query_scalar(
                    "INSERT INTO cpi_connections (name, database_url) VALUES ('c', $1) RETURNING id",
                )
                .bind(u)
                .fetch_one(&self.pool)
                .await
                .unwrap(),
            ),
            None => None,
        };
        sqlx::query("INSERT INTO cpi_projects (name, connection_id, config) VALUES ('p', $1, $2)")
            .bind(conn)
            .bind(config)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    pub fn inbox(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.inbox().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    pub async fn exec(&self, sql: &str) {
        super::db::exec(&self.pool, sql).await;
    }

    /// One text value per row.
    pub async fn rows(&self, sql: &str) -> Vec<String> {
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn try_import(&self, name: &str, bytes: &[u8]) -> Result<JobOutcome, ImportError> {
        let path = self.file(name, bytes);
        self.run(&path).await
    }

    pub async fn run(&self, path: &Path) -> Result<JobOutcome, ImportError> {
        // As `cpi import` runs a file.
        let created = jobs::create_started(
            &self.pool,
            "p",
            &cpi::location::FileRef::local(path),
            "test",
        )
        .await
        .unwrap();
        let mut known = import::Known::default();
        import::run_created(&self.pool, &created, "test", None, &mut known).await
    }

    pub async fn import(&self, name: &str, bytes: &[u8]) -> JobOutcome {
        match self.try_import(name, bytes).await {
            Ok(o) => o,
            Err(e) => panic!("import of {name} failed: {e}"),
        }
    }
}

/// Fails the test unless `o` failed with exactly this `error`.
pub fn assert_failed_with(o: &JobOutcome, error: &str) {
    assert_eq!(o.status, JobStatus::Failed);
    assert_eq!(o.error.as_deref(), Some(error));
}

/// (read, inserted, updated, deleted, rejected)
pub fn counts(o: &JobOutcome) -> (u64, u64, u64, u64, u64) {
    let c = &o.counts;
    (
        c.rows_read,
        c.rows_inserted,
        c.rows_updated,
        c.rows_deleted,
        c.rows_rejected,
    )
}
