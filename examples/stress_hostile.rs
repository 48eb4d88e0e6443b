//! The hostile-input report's attacks at full size against a running
//! daemon, with a big import running beside them: for each, the time to its
//! clear error, the daemon's peak RSS, `/healthz` latency (p99, max) and the
//! lease renewals of the running import (the longest gap between two).
//!
//! `cargo build --release && cargo run --release --example stress_hostile`
//!
//! Attacks (numbers of the issue): 1 a header of 1,000,000 columns; 2 a
//! 5 GB record (sparse), a gzip bomb of 10 GB of zeros, a 100 MB field;
//! 3 a connection whose `database_url_file` is `/dev/zero`; 4 a manifest of
//! `{a: ` × 200,000; 5 a good file whose move to `processed/` (a 256 KiB
//! tmpfs, mounted for the run: needs root) finds the disk full. The daemon runs with `--lease 3s` (renewed every 1 s)
//! and `--shutdown-timeout 5s`; at the end it gets SIGTERM mid-import.
//! Sizes: `--record-gib`, `--bomb-gib`, `--field-mib`, `--steady-rows`.

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;

const LEASE_SECS: f64 = 3.0;

/// What the probes saw during one attack.
#[derive(Default)]
struct Seen {
    /// (when sent, epoch seconds; how long it took).
    health: Vec<(f64, Duration)>,
    /// (when seen, lease expiry) of the steady import, epoch seconds.
    leases: Vec<(f64, f64)>,
}

#[tokio::main]
async fn main() {
    let record_gib = bench_support::arg("--record-gib", "CPI_STRESS_RECORD_GIB", 5);
    let bomb_gib = bench_support::arg("--bomb-gib", "CPI_STRESS_BOMB_GIB", 10);
    let field_mib = bench_support::arg("--field-mib", "CPI_STRESS_FIELD_MIB", 100);
    let steady_rows = bench_support::arg("--steady-rows", "CPI_STRESS_STEADY_ROWS", 3_000_000);
    let bin = bench_support::release_binary();
    let bench_db = bench_support::fresh_database("cpi_stress").await;
    let url = bench_db.url.clone();
    let pool = PgPool::connect(&url).await.unwrap();
    for ddl in [
        "CREATE TABLE t (a text, b text)",
        "CREATE TABLE steady (id bigint, v text)",
    ] {
        sqlx::query(ddl).execute(&pool).await.unwrap();
    }
    let f = bench_support::folders();
    let (hostile, steady) = (f.inbox.join("hostile"), f.inbox.join("steady"));
    std::fs::create_dir_all(&hostile).unwrap();
    std::fs::create_dir_all(&steady).unwrap();
    let good_manifests = bench_support::connection_doc("target", &url)
        + &bench_support::project_doc(
            "hostile",
            "target",
            Some(&hostile),
            "{table: t, mode: append}",
        )
        + &bench_support::project_doc(
            "steady",
            "target",
            Some(&steady),
            "{table: steady, mode: append}",
        );
    std::fs::write(f.manifests.join("all.yaml"), &good_manifests).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = f.tmp.path().join("daemon.log");
    let mut daemon = Command::new(&bin)
        .args(["run", "--database-url", &url, "--manifests"])
        .arg(&f.manifests)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--workers",
            "3",
            "--lease",
            "3s",
            "--shutdown-timeout",
            "5s",
        ])
        .args(["--settle", "200ms", "--rescan", "1s", "--interval", "1h"])
        .env("CPI_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = daemon.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let ready = Instant::now();
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "the daemon did not get ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Probes, for the whole run; each attack reads its own window.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let done = Arc::new(AtomicBool::new(false));
    let health = tokio::spawn(poll_health(
        format!("{base}/healthz"),
        seen.clone(),
        done.clone(),
    ));
    let leases = tokio::spawn(watch_lease(pool.clone(), seen.clone(), done.clone()));
    // The steady import: a new file whenever the last one left the inbox.
    let feeder = {
        let (steady, done) = (steady.clone(), done.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                if !steady.join(format!("s{n}.csv")).exists() {
                    n += 1;
                    let (dir, rows) = (steady.clone(), steady_rows);
                    tokio::task::spawn_blocking(move || steady_file(&dir, n, rows))
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    wait_running(&pool, "steady", Duration::from_secs(60)).await;

    println!(
        "| attack | clear error after | peak RSS | /healthz p99 | /healthz max | renewals (longest gap, lease {LEASE_SECS} s) |"
    );
    println!("|---|---|---|---|---|---|");
    let attacks: Vec<(&str, Attack)> = vec![
        (
            "1. header of 1,000,000 columns",
            Attack::File("wide.csv", Payload::Wide),
        ),
        (
            "2. one record of 5 GB (sparse)",
            Attack::File("record.csv", Payload::Sparse(record_gib << 30)),
        ),
        (
            "2. gzip bomb",
            Attack::File("bomb.csv.gz", Payload::Bomb(bomb_gib << 30)),
        ),
        (
            "2. one field of 100 MB",
            Attack::File("field.csv", Payload::Field(field_mib << 20)),
        ),
        (
            "3. database_url_file: /dev/zero",
            Attack::Manifest(Manifest::DevZero),
        ),
        (
            "4. manifest nested 200,000 deep",
            Attack::Manifest(Manifest::Nested),
        ),
        (
            "5. move onto a full disk (900 KB file, 256 KiB processed/)",
            Attack::Move,
        ),
    ];
    let processed = hostile.join("processed");
    let mut mounted = false;
    let mut failed_jobs = 0;
    let mut failed_runs = 0;
    for (name, attack) in attacks {
        // Payloads are made outside the inbox, then renamed in.
        let stage = f.tmp.path().join("stage");
        let staged = match &attack {
            Attack::File(_, p) => Some(
                tokio::task::spawn_blocking({
                    let (stage, p) = (stage.clone(), p.clone());
                    move || p.write(&stage)
                })
                .await
                .unwrap(),
            ),
            Attack::Move => Some(move_file(&stage)),
            Attack::Manifest(_) => None,
        };
        if matches!(attack, Attack::Move) {
            std::fs::create_dir_all(&processed).unwrap();
            mounted = mount(&processed, "size=256k");
            if !mounted {
                println!("| {name} | not run: mounting a tmpfs needs root | | | | |");
                continue;
            }
        }
        // Each attack meets a running import, whose lease renewals it may
        // not delay.
        wait_running(&pool, "steady", Duration::from_secs(120)).await;
        reset_peak_rss(pid);
        let from = epoch();
        let started = Instant::now();
        let mut error_after = None;
        let outcome = match &attack {
            Attack::File(file, _) => {
                std::fs::rename(staged.unwrap(), hostile.join(file)).unwrap();
                failed_jobs += 1;
                wait_count(
                    &pool,
                    "SELECT count(*) FROM cpi_import_jobs WHERE target_table = 't' AND status = 'failed'",
                    failed_jobs,
                )
                .await;
                let (e,): (String,) = sqlx::query_as(
                    "SELECT error FROM cpi_import_jobs WHERE target_table = 't' ORDER BY finished_at DESC LIMIT 1",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                e
            }
            Attack::Manifest(m) => {
                m.write(&f.manifests);
                failed_runs += 1;
                wait_count(
                    &pool,
                    "SELECT count(*) FROM cpi_reconcile_runs WHERE status = 'failed'",
                    failed_runs,
                )
                .await;
                let (e,): (String,) = sqlx::query_as(
                    "SELECT error FROM cpi_reconcile_runs WHERE status = 'failed' ORDER BY started_at DESC LIMIT 1",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                m.undo(&f.manifests);
                e
            }
            Attack::Move => {
                let bytes = std::fs::metadata(staged.as_ref().unwrap()).unwrap().len();
                let inbox_file = hostile.join("move.csv");
                std::fs::rename(staged.unwrap(), &inbox_file).unwrap();
                let deadline = Instant::now() + Duration::from_secs(60);
                while !std::fs::read_to_string(&log)
                    .unwrap()
                    .contains("cannot move the file")
                {
                    assert!(Instant::now() < deadline, "no error for the failed move");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let took = started.elapsed();
                error_after = Some(took);
                // The copy failed: what is left where.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let left = std::fs::read_dir(&processed).unwrap().count();
                let kept = std::fs::metadata(&inbox_file).map_or(0, |m| m.len());
                // Room again: the retried move lands the whole file once.
                assert!(mount(&processed, "remount,size=4m"));
                let landed = processed.join("move.csv");
                while !landed.exists() || inbox_file.exists() {
                    assert!(Instant::now() < deadline, "the move never landed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                format!(
                    "after {:.2} s: processed/ held {left} entries (no half file), the inbox kept \
                     {kept} of {bytes} bytes; with room, processed/move.csv landed whole: {}",
                    took.as_secs_f64(),
                    std::fs::metadata(&landed).unwrap().len() == bytes
                )
            }
        };
        let took = error_after.unwrap_or_else(|| started.elapsed());
        // Three seconds more of probing after the error: the attack's
        // aftermath, and three lease renewals at least.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let to = epoch();
        let rss = peak_rss_mib(pid);
        let (p99, max, gap, renewals) = window(&seen.lock().unwrap(), from, to);
        println!(
            "| {name} | {:.2} s | {rss} MiB | {p99:.1} ms | {max:.1} ms | {renewals} ({gap}) |",
            took.as_secs_f64()
        );
        eprintln!("    {name}: {}", first_line(&outcome));
    }

    // SIGTERM mid-import: rolled back and requeued within the timeout.
    wait_running(&pool, "steady", Duration::from_secs(120)).await;
    let (running,): (uuid::Uuid,) = sqlx::query_as(
        "SELECT id FROM cpi_import_jobs WHERE status = 'running' AND target_table = 'steady'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    done.store(true, Ordering::Relaxed);
    let asked = Instant::now();
    signal(pid, "-TERM");
    let status = daemon.wait().unwrap();
    let stopped = asked.elapsed();
    feeder.await.unwrap();
    let health_seen = health.await.unwrap();
    leases.await.unwrap();
    // Within the timeout the running import may finish (and commit);
    // past it, it is rolled back and its job queued again.
    let (after,): (String,) = sqlx::query_as("SELECT status FROM cpi_import_jobs WHERE id = $1")
        .bind(running)
        .fetch_one(&pool)
        .await
        .unwrap();
    let rolled_back = std::fs::read_to_string(&log)
        .unwrap()
        .contains("rolled back, job requeued");
    let verdict = match (after.as_str(), rolled_back) {
        ("queued", true) => "rolled back at the timeout, its job queued again".to_string(),
        ("succeeded", false) => "finished within the timeout and committed".to_string(),
        (s, r) => format!("job {s}, rolled back: {r}"),
    };
    println!(
        "\nSIGTERM mid-import: exited {} after {:.2} s (shutdown timeout 5 s); the running import {verdict}",
        status.code().map_or("by a signal".into(), |c| c.to_string()),
        stopped.as_secs_f64()
    );
    println!("/healthz over the whole run: {health_seen} requests");
    if mounted {
        let _ = Command::new("umount").arg(&processed).status();
    }
    pool.close().await;
    bench_db.drop_db().await;
}

#[derive(Clone)]
enum Payload {
    Wide,
    Sparse(u64),
    Bomb(u64),
    Field(u64),
}

impl Payload {
    /// Writes the payload at `path` (replacing it).
    fn write(&self, path: &Path) -> PathBuf {
        let _ = std::fs::remove_file(path);
        match self {
            Payload::Wide => {
                let names: Vec<String> = (0..1_000_000).map(|i| format!("c{i}")).collect();
                std::fs::write(path, names.join(",") + "\n").unwrap();
            }
            Payload::Sparse(bytes) => {
                std::fs::write(path, "a,b\n").unwrap();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .unwrap()
                    .set_len(*bytes)
                    .unwrap();
            }
            Payload::Bomb(bytes) => {
                let script = format!("head -c {bytes} /dev/zero | gzip -1 > '{}'", path.display());
                assert!(Command::new("bash")
                    .args(["-c", &script])
                    .status()
                    .unwrap()
                    .success());
            }
            Payload::Field(bytes) => {
                let mut s = String::with_capacity(*bytes as usize + 16);
                s.push_str("a,b\n\"");
                s.extend(std::iter::repeat_n('x', *bytes as usize));
                s.push_str("\",1\n");
                std::fs::write(path, s).unwrap();
            }
        }
        path.to_path_buf()
    }
}

enum Manifest {
    DevZero,
    Nested,
}

impl Manifest {
    const FILE: &'static str = "hostile.yaml";

    fn write(&self, dir: &Path) {
        let text = match self {
            Manifest::DevZero => "apiVersion: cpi/v1\nkind: Connection\nmetadata: {name: zero}\nspec:\n  database_url_file: /dev/zero\n".to_string(),
            Manifest::Nested => format!(
                "apiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: n\nspec: {}\n",
                "{a: ".repeat(200_000)
            ),
        };
        std::fs::write(dir.join(Self::FILE), text).unwrap();
    }

    fn undo(&self, dir: &Path) {
        std::fs::remove_file(dir.join(Self::FILE)).unwrap();
    }
}

enum Attack {
    File(&'static str, Payload),
    Manifest(Manifest),
    /// A good file whose move to a full `processed/` (a small tmpfs) fails.
    Move,
}

/// About 900 KB of good rows for table `t`, at `path`.
fn move_file(path: &Path) -> PathBuf {
    let rows: String = (0..64_000).map(|i| format!("{i},moved-{i}\n")).collect();
    std::fs::write(path, format!("a,b\n{rows}")).unwrap();
    path.to_path_buf()
}

/// `mount -t tmpfs -o OPTIONS tmpfs AT` (remounts with `remount,…`).
fn mount(at: &Path, options: &str) -> bool {
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success())
}

/// `steady` rows `rows` in `dir/s{n}.csv` (written aside, renamed in).
fn steady_file(dir: &Path, n: u64, rows: u64) {
    use std::io::Write;
    let tmp = dir.with_extension(format!("{n}.tmp"));
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    writeln!(w, "id,v").unwrap();
    for i in 0..rows {
        writeln!(w, "{i},round-{n}-row-with-some-text-{i}").unwrap();
    }
    w.flush().unwrap();
    drop(w);
    std::fs::rename(&tmp, dir.join(format!("s{n}.csv"))).unwrap();
}

async fn poll_health(url: String, seen: Arc<Mutex<Seen>>, done: Arc<AtomicBool>) -> usize {
    let http = reqwest::Client::new();
    let mut n = 0;
    while !done.load(Ordering::Relaxed) {
        let (at, t) = (epoch(), Instant::now());
        let ok = http.get(&url).send().await.is_ok_and(|r| r.status() == 200);
        // Only a stopping daemon may not answer.
        assert!(ok || done.load(Ordering::Relaxed), "/healthz failed");
        seen.lock().unwrap().health.push((at, t.elapsed()));
        n += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    n
}

async fn watch_lease(pool: PgPool, seen: Arc<Mutex<Seen>>, done: Arc<AtomicBool>) {
    while !done.load(Ordering::Relaxed) {
        let row: Option<(f64, f64)> = sqlx::query_as(
            "SELECT extract(epoch FROM now())::float8, extract(epoch FROM lease_expires_at)::float8 \
             FROM cpi_import_jobs WHERE status = 'running' AND target_table = 'steady'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if let Some(r) = row {
            let mut s = seen.lock().unwrap();
            if s.leases.last().map(|l| l.1) != Some(r.1) {
                s.leases.push(r);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/healthz` p99 and max (ms), the longest gap between two renewals and
/// the renewals seen, in `from..to` (epoch seconds; the server is on this
/// machine, so its clock is ours).
fn window(seen: &Seen, from: f64, to: f64) -> (f64, f64, String, usize) {
    let mut h: Vec<f64> = seen
        .health
        .iter()
        .filter(|(at, _)| (from..=to).contains(at))
        .map(|(_, d)| d.as_secs_f64() * 1000.0)
        .collect();
    h.sort_by(f64::total_cmp);
    let p99 = h
        .get(h.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(0.0);
    let max = h.last().copied().unwrap_or(0.0);
    let l: Vec<&(f64, f64)> = seen
        .leases
        .iter()
        .filter(|(at, _)| *at >= from && *at <= to)
        .collect();
    // A renewal sets the expiry to now + lease: the gap between renewals is
    // the difference of consecutive expiries.
    let gap = l
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g))));
    let gap = gap.map_or("no two renewals in the window".into(), |g| {
        format!("{g:.2} s")
    });
    (p99, max, gap, l.len())
}

fn epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn wait_count(pool: &PgPool, sql: &'static str, n: i64) {
    let started = Instant::now();
    loop {
        let (c,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await.unwrap();
        if c >= n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "waited 10 minutes for: {sql}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_running(pool: &PgPool, table: &str, timeout: Duration) {
    let started = Instant::now();
    loop {
        let (c,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM cpi_import_jobs WHERE status = 'running' AND target_table = $1",
        )
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap();
        if c > 0 {
            return;
        }
        assert!(started.elapsed() < timeout, "no {table} import running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resets the process's peak RSS (`VmHWM`): Linux's `clear_refs` value 5.
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    kib / 1024
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
