//! Many inboxes: one daemon watching N projects, each with its own inbox.
//! Prints what a full rescan of every inbox costs (the daemon's own
//! `full inbox scan` debug timing) and how long a file dropped into the
//! first, a middle and the last inbox takes to be imported.
//!
//! `cargo build --release && cargo run --release --example bench_inboxes [-- OPTIONS]`
//!
//! - `--projects N` (default 1000): projects, one inbox each;
//! - `--watch-cap N` (default none): the hidden, test-only
//!   `--inotify-watch-cap`: at most N inotify watches, the other inboxes
//!   polled, as when `fs.inotify.max_user_watches` runs out;
//! - `--seconds N` (default 20): how long to let the daemon rescan
//!   (`--rescan 1s`) before the files are dropped.
//!
//! Set CPI_BENCH_ADMIN_URL to use another server.

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

fn arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|s| s.replace('_', "").parse().expect("a number"))
}

async fn count(conn: &mut PgConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(conn)
        .await
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let projects = arg("--projects").unwrap_or(1000);
    let cap = arg("--watch-cap");
    let seconds = arg("--seconds").unwrap_or(20);
    let bin = bench_support::release_binary();
    let bench_db = bench_support::fresh_database("cpi_inboxes").await;
    let url = bench_db.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let mut yaml = bench_support::connection_doc("target", &url);
    let inbox = |i: u64| dir.path().join("inbox").join(format!("p{i:05}"));
    for i in 0..projects {
        std::fs::create_dir_all(inbox(i)).unwrap();
        yaml.push_str(&bench_support::project_doc(
            &format!("p{i:05}"),
            "target",
            Some(&inbox(i)),
            "{table: ev, mode: append}",
        ));
    }
    std::fs::write(manifests.join("all.yaml"), yaml).unwrap();
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE ev (id bigint PRIMARY KEY, tag text)")
        .execute(&mut conn)
        .await
        .unwrap();
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new(&bin);
    cmd.args(["run", "--database-url", &url, "--manifests"])
        .arg(&manifests)
        .args(["--settle", "200ms", "--rescan", "1s", "--interval", "1h"])
        .args(["--log-format", "json"])
        .env("CPI_LOG", "warn,cpi::daemon=debug")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(cap) = cap {
        cmd.args(["--inotify-watch-cap", &cap.to_string()]);
    }
    let mut daemon = cmd.spawn().unwrap();
    let t = Instant::now();
    let deadline = t + Duration::from_secs(300);
    while count(&mut conn, "SELECT count(*) FROM cpi_projects").await < projects as i64 {
        assert!(Instant::now() < deadline, "the daemon did not reconcile");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{projects} projects reconciled {:.1} s after start",
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let drops = [0, projects / 2, projects - 1];
    let t = Instant::now();
    for (n, i) in drops.iter().enumerate() {
        std::fs::write(inbox(*i).join("drop.csv"), format!("id,tag\n{n},p{i:05}\n")).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&mut conn, "SELECT count(*) FROM ev").await < drops.len() as i64 {
        assert!(Instant::now() < deadline, "the files were not imported");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let imported = t.elapsed().as_secs_f64();
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();

    let text = std::fs::read_to_string(&log_path).unwrap();
    let mut passes: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "full inbox scan")
        .filter_map(|v| {
            Some((
                v["fields"]["ms"].as_f64()?,
                v["fields"]["inboxes"].as_u64()?,
            ))
        })
        .filter(|(_, n)| *n == projects)
        .collect();
    passes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let polled = text
        .lines()
        .find(|l| l.contains("inotify watches ran out"))
        .map_or("none".to_string(), |l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["fields"]["polled"].to_string()
        });
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("inboxes polled instead of watched: {polled}");
    if let (Some(min), Some(max)) = (passes.first(), passes.last()) {
        println!(
            "full scan of {projects} inboxes (project rows, configs, watches, every listing): {} passes, median {:.1} ms, min {:.1} ms, max {:.1} ms",
            passes.len(),
            passes[passes.len() / 2].0,
            min.0,
            max.0
        );
    }
    println!(
        "files dropped into inboxes {drops:?}: all imported {imported:.2} s later (settle 200 ms)"
    );
    println!(
        "load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    drop(conn);
    bench_db.drop_db().await;
}
