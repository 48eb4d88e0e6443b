//! Many small files: a `psql \copy` loop, one `psql` session running every
//! `\copy` (each its own transaction: the server's floor), `cpi import` of
//! all files in one call, and the daemon, in the same run on this machine.
//!
//! `cargo build --release && cargo run --release --example bench_small_files [-- OPTIONS]`
//!
//! Options (or environment variables):
//! - `--files N` (`BENCH_FILES`, default 1000): how many files;
//! - `--rows N` (`BENCH_FILE_ROWS`, default 20): rows per file;
//! - `--history N` (`BENCH_HISTORY`, default 0): finished jobs inserted with
//!   SQL into `cpi_import_jobs` (same project and table) before timing;
//! - `--rounds N` (`BENCH_ROUNDS`, default 3): paired rounds; medians printed;
//! - `--no-loop`: skips the `psql` loop (a process per file: minutes for 10,000 files);
//! - `--explain`: prints the plans of the daemon's claim (auto_explain) after the history is in.
//! - `BENCH_DAEMON_LOG`, `BENCH_IMPORT_LOG`: `CPI_LOG` of the daemon, of `cpi import` (JSON
//!   lines on stderr, for per-file timings; default `warn`).
//!
//! Each round generates the files (id bigint primary key, store text,
//! amount numeric, at timestamptz) and times, into three tables of the same
//! shape: `for f; do psql -c "\copy …"; done`, one `psql -f` of a script
//! holding every `\copy` (autocommit: one transaction per file),
//! `cpi import` of all files in one call, and the real `cpi run` (`--settle 200ms`, 2 workers) from
//! "files moved into the inbox" (one rename each) to "all rows committed".
//! Set CPI_BENCH_ADMIN_URL to use another server.

#[path = "bench_support/mod.rs"]
mod bench_support;

use bench_support::arg;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

fn generate(dir: &Path, files: u64, rows: u64, round: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..files)
        .map(|f| {
            let mut body = String::from("id,store,amount,at\n");
            for r in 0..rows {
                let id = (round * files + f) * rows + r + 1;
                body.push_str(&format!(
                    "{id},store_{f:04},{}.{:02},2026-11-{:02}T{:02}:00:00Z\n",
                    id % 997,
                    id % 100,
                    1 + r % 28,
                    r % 24
                ));
            }
            let p = dir.join(format!("drop_{f:05}.csv"));
            std::fs::write(&p, body).unwrap();
            p
        })
        .collect()
}

async fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
        .fetch_one(conn)
        .await
        .unwrap_or(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `CPI_LOG` and the log-format flags for cpi from the benchmark's
/// variable `var`: its filter as JSON lines on stderr, or warnings only.
fn logging(var: &str) -> (String, &'static [&'static str]) {
    match std::env::var(var) {
        Ok(filter) => (filter, &["--log-format", "json"]),
        Err(_) => ("warn".into(), &[]),
    }
}

#[tokio::main]
async fn main() {
    let files = arg("--files", "BENCH_FILES", 1000);
    let rows = arg("--rows", "BENCH_FILE_ROWS", 20);
    let history = arg("--history", "BENCH_HISTORY", 0);
    let rounds = arg("--rounds", "BENCH_ROUNDS", 3).max(1);
    let explain = std::env::args().any(|a| a == "--explain");
    let no_loop = std::env::args().any(|a| a == "--no-loop");
    let bin = bench_support::release_binary();
    let bench_db = bench_support::fresh_database("cpi_small").await;
    let url = bench_db.url.clone();

    let f = bench_support::folders();
    let (dir, inbox, manifests) = (&f.tmp, f.inbox.clone(), f.manifests.clone());
    std::fs::write(
        manifests.join("all.yaml"),
        bench_support::connection_doc("target", &url)
            + &bench_support::project_doc(
                "drops",
                "target",
                Some(&inbox),
                "{table: ev_daemon, mode: append}",
            )
            + &bench_support::project_doc(
                "cli",
                "target",
                None,
                "{table: ev_import, mode: append}",
            ),
    )
    .unwrap();
    let mut conn = PgConnection::connect(&url).await.unwrap();
    for t in ["ev_psql", "ev_session", "ev_import", "ev_daemon"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {t} (id bigint PRIMARY KEY, store text, amount numeric(12,2), at timestamptz)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }

    let (daemon_log, import_log) = (logging("BENCH_DAEMON_LOG"), logging("BENCH_IMPORT_LOG"));
    let mut daemon = Command::new(&bin)
        .args(["run", "--database-url", &url, "--manifests"])
        .arg(&manifests)
        .args(["--settle", "200ms", "--workers", "2"])
        .env("CPI_LOG", &daemon_log.0)
        .args(daemon_log.1)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the daemon has migrated and reconciled both projects.
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&mut conn, "SELECT count(*) FROM cpi_projects").await < 2 {
        assert!(Instant::now() < deadline, "the daemon did not reconcile");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if history > 0 {
        let t = Instant::now();
        sqlx::query(
            "INSERT INTO cpi_import_jobs (project_id, project_name, connection_id, file_name, file_path,
                    file_size, file_sha256, target_table, mode, status, rows_read, rows_inserted, worker,
                    attempts, created_at, started_at, finished_at)
             SELECT p.id, p.name, p.connection_id, 'old_' || g || '.csv', '/old/old_' || g || '.csv',
                    100000 + g, md5(g::text), 'ev_daemon', 'append',
                    CASE WHEN g % 50 = 0 THEN 'failed' ELSE 'succeeded' END, 20, 20, 'old:w0', 1,
                    now() - interval '1 day' + g * interval '1 ms', now() - interval '1 day', now() - interval '1 day'
               FROM cpi_projects p, generate_series(1, $1) g WHERE p.name = 'drops'",
        )
        .bind(history as i64)
        .execute(&mut conn)
        .await
        .unwrap();
        println!(
            "inserted {history} finished jobs in {:.1} s (not analyzed)",
            t.elapsed().as_secs_f64()
        );
    }
    if explain {
        // The claim as a worker runs it, after the table's previous job
        // (`cpi_claim` tries the table first, then any table), in a
        // transaction rolled back: auto_explain prints the plan of each
        // statement inside the function and of the claim's own query, as
        // generic plans (what a worker's cached plans become).
        let project: uuid::Uuid =
            sqlx::query_scalar("SELECT id FROM cpi_projects WHERE name = 'drops'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        let claim = cpi::store::queue::CLAIM_SQL
            .replace("$1", "'explain'")
            .replace("$2", "1")
            .replace("$3", &format!("'{project}'::uuid"))
            .replace("$4", "'ev_daemon'");
        let out = Command::new("psql")
            .args(["-X", "-q", "-d", &url])
            .args([
                "-c",
                "LOAD 'auto_explain'",
                "-c",
                "SET auto_explain.log_min_duration = 0",
                "-c",
                "SET auto_explain.log_nested_statements = on",
                "-c",
                "SET auto_explain.log_level = notice",
                "-c",
                "SET plan_cache_mode = force_generic_plan",
                "-c",
                "BEGIN",
                "-c",
                &claim,
                "-c",
                "ROLLBACK",
            ])
            .output()
            .expect("psql");
        println!(
            "EXPLAIN of the claim (auto_explain):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let (mut loop_s, mut import_s, mut daemon_s) = (vec![], vec![], vec![]);
    let mut session_s = vec![];
    for round in 0..rounds {
        let staging = dir.path().join(format!("staging_{round}"));
        let paths = generate(&staging, files, rows, round);
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

        let t = Instant::now();
        for p in paths.iter().filter(|_| !no_loop) {
            let ok = Command::new("psql")
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-c"])
                .arg(format!("\\copy ev_psql FROM '{}' CSV HEADER", p.display()))
                .status()
                .unwrap()
                .success();
            assert!(ok, "psql failed");
        }
        loop_s.push(t.elapsed().as_secs_f64());

        // The floor: one session, one `\copy` (one transaction) per file.
        let script = staging.join("all.psql");
        let lines: String = paths
            .iter()
            .map(|p| format!("\\copy ev_session FROM '{}' CSV HEADER\n", p.display()))
            .collect();
        std::fs::write(&script, lines).unwrap();
        let t = Instant::now();
        let ok = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-f"])
            .arg(&script)
            .status()
            .unwrap()
            .success();
        assert!(ok, "psql -f failed");
        session_s.push(t.elapsed().as_secs_f64());
        std::fs::remove_file(&script).unwrap();

        let t = Instant::now();
        let out = Command::new(&bin)
            .args(["import", "--project", "cli", "--database-url", &url])
            .args(&paths)
            .env("CPI_LOG", &import_log.0)
            .args(import_log.1)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(out.success(), "cpi import failed");
        import_s.push(t.elapsed().as_secs_f64());

        let expected = ((round + 1) * files * rows) as i64;
        // The daemon creates the inbox when it first lists the project; the
        // benchmark may get here first.
        std::fs::create_dir_all(&inbox).unwrap();
        let t = Instant::now();
        for p in &paths {
            std::fs::rename(p, inbox.join(p.file_name().unwrap())).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        while count(&mut conn, "SELECT count(*) FROM ev_daemon").await < expected {
            assert!(Instant::now() < deadline, "the daemon did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        daemon_s.push(t.elapsed().as_secs_f64());
        // All rows are committed; wait for the last moves before the next round.
        while inbox::pending(&inbox) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let tables = if no_loop { 1 } else { 0 };
        for (t, n) in [
            ("ev_psql", &loop_s),
            ("ev_session", &session_s),
            ("ev_import", &import_s),
        ]
        .into_iter()
        .skip(tables)
        {
            let c = count(&mut conn, &format!("SELECT count(*) FROM {t}")).await;
            assert_eq!(c, expected, "{t}: {} s", n[round as usize]);
        }
        let r = round as usize;
        println!(
            "round {}: psql loop {:.2} s, one psql session {:.3} s, cpi import {:.2} s, daemon {:.2} s (load average {})",
            round + 1,
            loop_s[r],
            session_s[r],
            import_s[r],
            daemon_s[r],
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let (l, i, d) = (
        median(&mut loop_s),
        median(&mut import_s),
        median(&mut daemon_s),
    );
    let one = median(&mut session_s);
    let n = files as f64;
    println!();
    println!(
        "{files} files × {rows} rows, {history} finished jobs in the history, median of {rounds} round(s):"
    );
    println!("psql \\copy loop: {l:.2} s, {:.0} files/s", n / l);
    println!(
        "one psql session (the floor): {one:.3} s, {:.0} files/s, {:.2} ms a file",
        n / one,
        one * 1000.0 / n
    );
    println!(
        "cpi import (one call): {i:.2} s, {:.0} files/s → {:.1}× the loop, {:.1}× the session's time",
        n / i,
        l / i,
        i / one
    );
    println!(
        "cpi run (daemon): {d:.2} s, {:.0} files/s, {:.2} ms a file → {:.1}× the loop, {:.1}× the session's time (goal ≤ 2×)",
        n / d,
        d * 1000.0 / n,
        l / d,
        d / one
    );
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    drop(conn);
    bench_db.drop_db().await;
}

mod inbox {
    /// Files still directly in the inbox.
    pub fn pending(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|d| d.flatten().filter(|e| e.path().is_file()).count())
            .unwrap_or(0)
    }
}
