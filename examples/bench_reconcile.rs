//! Reconcile at scale: 10,000 connections + 10,000 projects.
//!
//! `cargo build --release && cargo run --release --example bench_reconcile [N]`
//!
//! Generates a manifests folder, creates a fresh database, and times the
//! real `cpi` binary: `apply` (create everything), `diff` (no changes) and
//! `apply` (no changes). Set CPI_BENCH_ADMIN_URL to use another server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sqlx::{Connection, PgConnection};

fn cpi_binary() -> PathBuf {
    // target/release/examples/bench_reconcile → target/release/cpi
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("cpi");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release` first",
        bin.display()
    );
    bin
}

fn generate(dir: &Path, n: usize) {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let per_file = 200;
    for f in 0..n.div_ceil(per_file) {
        let mut conns = String::new();
        let mut projs = String::new();
        for i in f * per_file..((f + 1) * per_file).min(n) {
            conns.push_str(&format!(
                "---\napiVersion: cpi/v1\nkind: Connection\nmetadata:\n  name: conn_{i:05}\nspec:\n  description: Customer {i} production database\n  database_url: postgresql://importer@db{}.internal:5432/customer_{i}\n  password_file: secrets/conn_{i:05}.pass\n",
                i % 16
            ));
            std::fs::write(
                secrets.join(format!("conn_{i:05}.pass")),
                format!("pw-{i}-secret\n"),
            )
            .unwrap();
            projs.push_str(&format!(
                "---\napiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: proj_{i:05}\nspec:\n  description: Customer {i} nightly exports\n  connection: conn_{i:05}\n  config:\n    inbox: /srv/cpi/inbox/customer_{i}\n    defaults:\n      primary_key: id\n    tables:\n      - file_pattern: \"orders_*.csv\"\n        table: sales.orders\n        primary_key: [order_id]\n        mode: upsert\n"
            ));
        }
        std::fs::write(dir.join(format!("connections_{f:03}.yaml")), conns).unwrap();
        std::fs::write(dir.join(format!("projects_{f:03}.yaml")), projs).unwrap();
    }
}

fn time(bin: &Path, args: &[&str], expect: i32) -> f64 {
    let start = Instant::now();
    let out = Command::new(bin).args(args).output().expect("run cpi");
    let secs = start.elapsed().as_secs_f64();
    let code = out.status.code().unwrap_or(-1);
    if code != expect {
        panic!(
            "cpi {args:?} exited {code}, expected {expect}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    secs
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let admin = std::env::var("CPI_BENCH_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let bin = cpi_binary();
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    generate(&manifests, n);

    let db = format!("cpi_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
    let m = manifests.to_str().unwrap();
    let common = ["--database-url", url.as_str(), "--manifests", m];
    let with = |cmd: &[&'static str]| -> Vec<&str> {
        cmd.iter().copied().chain(common.iter().copied()).collect()
    };

    time(&bin, &with(&["migrate"]), 0);
    let diff_create = time(&bin, &with(&["diff"]), 2);
    let create = time(&bin, &with(&["apply"]), 0);
    let diff_noop = time(&bin, &with(&["diff"]), 0);
    let apply_noop = time(&bin, &with(&["apply"]), 0);

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE \"{db}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    println!("reconcile benchmark: {n} connections + {n} projects");
    println!("  cpi diff  (everything to create) {diff_create:>7.2} s");
    println!("  cpi apply (create)               {create:>7.2} s   goal < 10 s");
    println!("  cpi diff  (no changes)           {diff_noop:>7.2} s   goal < 1 s");
    println!("  cpi apply (no changes)           {apply_noop:>7.2} s");
}
