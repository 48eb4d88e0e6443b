//! What the benchmarks that drive the real binary share: finding it, a
//! fresh database on the server they measure against, their numeric
//! arguments, and bench_import's table and rows.

// Each example includes this file and uses a part of it.
#![allow(dead_code)]

use std::io::Write;
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

/// A Connection manifest document: `name`, to `url`.
pub fn connection_doc(name: &str, url: &str) -> String {
    format!(
        "apiVersion: cpi/v1\nkind: Connection\nmetadata: {{name: {name}}}\nspec:\n  database_url: \"{url}\"\n"
    )
}

/// A Project manifest document (after a `---`, to follow another one) on
/// `connection`, with its `inbox` when given, and `defaults` (a YAML flow
/// mapping such as `{table: ev, mode: append}`).
pub fn project_doc(name: &str, connection: &str, inbox: Option<&Path>, defaults: &str) -> String {
    let inbox = inbox
        .map(|p| format!("    inbox: {}\n", p.display()))
        .unwrap_or_default();
    format!(
        "---\napiVersion: cpi/v1\nkind: Project\nmetadata: {{name: {name}}}\nspec:\n  connection: {connection}\n  config:\n{inbox}    defaults: {defaults}\n"
    )
}

/// A temporary folder with an `inbox` and a `manifests` folder in it.
pub struct Folders {
    /// Removed when dropped.
    pub tmp: tempfile::TempDir,
    /// `inbox/`.
    pub inbox: PathBuf,
    /// `manifests/`.
    pub manifests: PathBuf,
}

/// [`Folders`], created.
pub fn folders() -> Folders {
    let tmp = tempfile::tempdir().unwrap();
    let inbox = tmp.path().join("inbox");
    let manifests = tmp.path().join("manifests");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::create_dir_all(&manifests).unwrap();
    Folders {
        tmp,
        inbox,
        manifests,
    }
}

/// `--name N` from the command line, else `$env`, else `default` (`_`
/// allowed as a digit separator).
pub fn arg(name: &str, env: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok())
        .map(|s| s.replace('_', "").parse().expect("a number"))
        .unwrap_or(default)
}

/// bench_import's table.
pub const TABLE: &str = "CREATE TABLE t (
    id bigint PRIMARY KEY, name text, email text, amount numeric(12,2), qty int,
    created_at timestamptz, active boolean, note text)";

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
}

const WORDS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
];

/// Row `id` of [`TABLE`] (~110 bytes), the same for the same `id` and
/// `version`: version 0 is the base file, 1 the changed one.
pub fn row(w: &mut impl Write, id: u64, version: u64) -> std::io::Result<()> {
    let mut r =
        Rng(id.wrapping_mul(0x9E3779B97F4A7C15) ^ version.wrapping_mul(0xD1B54A32D192ED03) | 1);
    let a = WORDS[(r.next() % 10) as usize];
    let b = WORDS[(r.next() % 10) as usize];
    let cents = r.next() % 10_000_000;
    let qty = r.next() % 1000;
    let secs = 1_600_000_000 + (r.next() % 100_000_000);
    let ts = chrono::DateTime::from_timestamp(secs as i64, 0).unwrap();
    writeln!(
        w,
        "{id},{a} {b},{a}.{b}{id}@example.com,{}.{:02},{qty},{},{},\"{b}, {a} said \"\"hi\"\", #{}\"",
        cents / 100,
        cents % 100,
        ts.format("%Y-%m-%dT%H:%M:%SZ"),
        if r.next().is_multiple_of(2) { "true" } else { "false" },
        r.next() % 100_000
    )
}
