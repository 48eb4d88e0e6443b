//! Latency of the daemon: from a file becoming ready (its job is queued
//! once it settled) to its import starting, median over 100 files.
//!
//! `cargo build --release && cargo run --release --example bench_latency`
//!
//! Starts the real `cpi run` on a temp folder and a fresh database, drops
//! 100 small files into an inbox one by one, waits for every job, and reads
//! `started_at - created_at` of the jobs. Set CPI_BENCH_ADMIN_URL to use
//! another server.

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

const FILES: usize = 100;

#[tokio::main]
async fn main() {
    let bin = bench_support::release_binary();
    let bench_db = bench_support::fresh_database("cpi_latency").await;
    let url = bench_db.url.clone();

    let f = bench_support::folders();
    let (inbox, manifests) = (f.inbox.clone(), f.manifests.clone());
    std::fs::write(
        manifests.join("all.yaml"),
        bench_support::connection_doc("target", &url)
            + &bench_support::project_doc(
                "latency",
                "target",
                Some(&inbox),
                "{table: events, mode: append}",
            ),
    )
    .unwrap();
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE events (id bigint PRIMARY KEY, v text)")
        .execute(&mut conn)
        .await
        .unwrap();

    let mut daemon = Command::new(&bin)
        .args([
            "run",
            "--database-url",
            &url,
            "--manifests",
            manifests.to_str().unwrap(),
        ])
        .args(["--settle", "500ms", "--workers", "2"])
        .env("CPI_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Let it start and reconcile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..FILES {
        let body = format!("id,v\n{},file {i}\n", i + 1);
        std::fs::write(inbox.join(format!("f_{i:03}.csv")), body).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (done,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM cpi_import_jobs WHERE status = 'succeeded'")
                .fetch_one(&mut conn)
                .await
                .unwrap_or((0,));
        if done as usize >= FILES || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (median, p90, max, n): (f64, f64, f64, i64) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d), percentile_cont(0.9) WITHIN GROUP (ORDER BY d), max(d), count(*)
           FROM (SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 AS d
                   FROM cpi_import_jobs WHERE status = 'succeeded') x",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    drop(conn);
    bench_db.drop_db().await;
    println!("ready -> job started, over {n} files: median {median:.1} ms, p90 {p90:.1} ms, max {max:.1} ms");
}
