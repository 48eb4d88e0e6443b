//! Databases for tests: each test gets its own, created on the admin server
//! and dropped afterwards, so tests never see each other's rows.

use std::path::Path;

use sqlx::{Connection, PgConnection, PgPool};

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
    /// The database's name (`cpi_test_<uuid>`), unique per test.
    pub name: String,
}

impl TestDb {
    /// Creates a fresh, empty database (no migrations run).
    pub async fn new() -> TestDb {
        let name = format!("cpi_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("admin connection");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        TestDb { name }
    }

    /// The database's URL: the admin URL with this database's name.
    pub fn url(&self) -> String {
        let admin = admin_url();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        format!("{base}/{}", self.name)
    }

    /// One connection to the database.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url())
            .await
            .expect("test database connection")
    }

    /// A pool on the database.
    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url())
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
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        })
        .join();
    }
}

/// Inserts a finished import job as the importer would (10 rows read, 7
/// inserted, 1.5 s long, `seconds_ago` old); its id.
pub async fn insert_job(pool: &PgPool, project: &str, status: &str, seconds_ago: i32) -> String {
    let (id,): (uuid::Uuid,) = sqlx::query_as(
        "INSERT INTO cpi_import_jobs (project_name, file_name, file_path, status, rows_read, rows_inserted,
                                      created_at, started_at, finished_at)
         VALUES ($1, 'f.csv', '/in/' || gen_random_uuid() || '/f.csv', $2, 10, 7,
                 now() - make_interval(secs => $3), now() - make_interval(secs => $3),
                 now() - make_interval(secs => $3) + interval '1.5 seconds')
         RETURNING id",
    )
    .bind(project)
    .bind(status)
    .bind(f64::from(seconds_ago))
    .fetch_one(pool)
    .await
    .unwrap();
    id.to_string()
}

/// The URL of database `db` on the embedded PostgreSQL of `state`, with the
/// password cpi generated there.
pub fn embedded_url(state: &Path, port: u16, db: &str) -> String {
    let pw = std::fs::read_to_string(state.join("embedded/password")).unwrap();
    format!("postgres://cpi:{}@127.0.0.1:{port}/{db}", pw.trim())
}

/// Whether a connection to `url` succeeds now.
pub async fn reachable(url: &str) -> bool {
    PgConnection::connect(url).await.is_ok()
}

/// How many statements run `COPY` in `pool`'s database right now.
pub async fn active_copies(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY%' AND state = 'active'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Runs `sql` (one or more statements) in `pool`'s database.
pub async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .unwrap();
}

/// The one bigint `sql` returns in `pool`'s database; -1 when the query
/// fails (a table not created yet reads as "not there", not as a panic).
pub async fn scalar_i64(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .map(|r| r.0)
        .unwrap_or(-1)
}

/// The text `sql` returns in `pool`'s database; `None` when there is no
/// row, the value is NULL or the query fails.
pub async fn scalar_text(pool: &PgPool, sql: &str) -> Option<String> {
    sqlx::query_as::<_, (Option<String>,)>(sqlx::AssertSqlSafe(sql))
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
        .and_then(|r| r.0)
}
