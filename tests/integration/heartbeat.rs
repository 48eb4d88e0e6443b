//! Nothing starves the heartbeat (#28): while the daemon reads the worst
//! files of the hostile-input report (a 1,000,000-column header, a record
//! past its budget, a gzip bomb, a manifest nested 200,000 levels deep) and
//! imports a big file beside them under a short lease, `/healthz` answers,
//! the lease is renewed before it expires, and SIGTERM ends the daemon
//! within its shutdown timeout with the big import rolled back.
//!
//! The bounds here are generous (a loaded CI machine, a debug binary): they
//! catch starvation, which is seconds. The figures against the goals
//! (`/healthz` p99 under 100 ms) come from `examples/stress_hostile.rs`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::support::daemon::{events_table_named, Daemon, Setup};
use crate::support::db::scalar_i64;
use crate::support::wait::{copy_running, http_ok, wait_i64};
use crate::support::{bin, free_port, write, TestDb};

/// Latencies of `GET /healthz`, one request every 20 ms until `stop`.
fn poll_health(url: String, stop: Arc<Mutex<bool>>) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut took = Vec::new();
        while !*stop.lock().unwrap() {
            let t = Instant::now();
            let ok = http.get(&url).send().await.is_ok_and(|r| r.status() == 200);
            assert!(ok, "/healthz failed after {:?}", t.elapsed());
            took.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        took
    })
}

/// The running big import's lease expiries as seen every 100 ms until
/// `stop`: (when seen, the expiry as epoch seconds).
fn watch_lease(pool: PgPool, stop: Arc<Mutex<bool>>) -> tokio::task::JoinHandle<Vec<f64>> {
    tokio::spawn(async move {
        let mut seen: Vec<f64> = Vec::new();
        while !*stop.lock().unwrap() {
            let row: Option<(f64,)> = sqlx::query_as(
                "SELECT extract(epoch FROM lease_expires_at)::float8 FROM cpi_import_jobs \
                 WHERE status = 'running' AND target_table = 'events'",
            )
            .fetch_optional(&pool)
            .await
            .unwrap();
            if let Some((e,)) = row {
                if seen.last() != Some(&e) {
                    seen.push(e);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_heartbeat_keeps_its_timing_while_the_worst_files_are_read() {
    let db = TestDb::new().await;
    let s = Setup::new(
        &db,
        &[
            ("p", "{table: events, mode: append}"),
            ("h", "{table: t, mode: append}"),
        ],
    );
    let pool = db.pool().await;
    events_table_named(&pool, "events").await;
    sqlx::query("CREATE TABLE t (a text, b text)")
        .execute(&pool)
        .await
        .unwrap();
    let big = s.big_tmp(3_000_000);
    let addr = format!("127.0.0.1:{}", free_port());
    let lease = 6;
    let mut d = Daemon::start(
        &db,
        &s.manifests(),
        &s.log("log"),
        &[
            "--listen",
            &addr,
            "--workers",
            "3",
            "--lease",
            &format!("{lease}s"),
            "--shutdown-timeout",
            "1s",
        ],
    );
    http_ok(&format!("http://{addr}/readyz"), Duration::from_secs(30))
        .await
        .unwrap();

    let stop = Arc::new(Mutex::new(false));
    let health = poll_health(format!("http://{addr}/healthz"), stop.clone());
    std::fs::rename(&big, s.inbox("p").join("big.csv")).unwrap();
    copy_running(&pool, Duration::from_secs(30)).await.unwrap();
    let leases = watch_lease(pool.clone(), stop.clone());

    // The worst files, beside the running import.
    let h = s.inbox("h");
    let names: Vec<String> = (0..1_000_000).map(|i| format!("c{i}")).collect();
    std::fs::write(h.join("wide.tmp"), names.join(",") + "\n").unwrap();
    std::fs::write(h.join("record.tmp"), "a,b\n").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(h.join("record.tmp"))
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    bin::bash(&h, "head -c 268435456 /dev/zero | gzip -1 > bomb.tmp", &[]).assert_code(0);
    for (tmp, name) in [
        ("wide.tmp", "wide.csv"),
        ("record.tmp", "record.csv"),
        ("bomb.tmp", "bomb.csv.gz"),
    ] {
        std::fs::rename(h.join(tmp), h.join(name)).unwrap();
    }
    write(
        &s.manifests(),
        "projects/nested.yaml",
        &format!(
            "apiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: n\nspec: {}\n",
            "{a: ".repeat(200_000)
        ),
    );
    wait_i64(
        &pool,
        120,
        "the three hostile files failed",
        "SELECT count(*) FROM cpi_import_jobs WHERE target_table = 't' AND status = 'failed'",
        3,
    )
    .await
    .unwrap();
    wait_i64(
        &pool,
        30,
        "the nested manifest refused",
        "SELECT count(*) FROM cpi_reconcile_runs WHERE status = 'failed' \
         AND error LIKE '%nested deeper than 64 levels%'",
        1,
    )
    .await
    .unwrap();
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_import_jobs WHERE target_table = 'events' AND status = 'running'"
        )
        .await,
        1,
        "the big import still runs (make it bigger if this machine got faster)"
    );

    // SIGTERM with the big import running: rolled back and requeued within
    // the 1 s shutdown timeout (plus the time to stop the rest).
    let (now,): (f64,) = sqlx::query_as("SELECT extract(epoch FROM now())::float8")
        .fetch_one(&pool)
        .await
        .unwrap();
    *stop.lock().unwrap() = true;
    let took = health.await.unwrap();
    let leases = leases.await.unwrap();
    let asked = Instant::now();
    d.signal("-TERM");
    let code = d.wait(Duration::from_secs(15));
    let stopped_in = asked.elapsed();
    assert_eq!(code, Some(0), "{}", d.log());
    assert!(
        stopped_in < Duration::from_secs(10),
        "stopped in {stopped_in:?}"
    );
    assert!(d.log().contains("rolled back, job requeued"), "{}", d.log());
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 0);
    assert!(s.inbox("p").join("big.csv").exists());

    let mut sorted = took.clone();
    sorted.sort();
    let max = *sorted.last().unwrap();
    let p99 = sorted[sorted.len() * 99 / 100];
    eprintln!(
        "/healthz: {} requests, p99 {p99:?}, max {max:?}",
        took.len()
    );
    assert!(took.len() > 20, "{} requests", took.len());
    assert!(
        max < Duration::from_secs(2),
        "/healthz stalled: max {max:?}"
    );
    // Renewed every lease/3: never a gap in which the lease could expire.
    assert!(leases.len() >= 2, "lease renewals seen: {leases:?}");
    for w in leases.windows(2) {
        assert!(
            w[1] - w[0] < lease as f64,
            "a renewal came {:.1} s after the last one (lease {lease} s): {leases:?}",
            w[1] - w[0]
        );
    }
    assert!(
        leases.last().is_some_and(|&e| e > now),
        "renewed until the stop: {leases:?} (stop at {now})"
    );
    assert!(!d.log().contains("lost the lease"), "{}", d.log());
}
