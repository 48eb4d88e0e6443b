//! cpi import vs psql, in one run on this machine.
//!
//! `cargo run --release --example bench_import [ROWS]` (or `BENCH_ROWS=…`;
//! default 1,000,000). Generates a deterministic CSV (~110 bytes a row) and
//! a changed copy (30 % of rows changed, 10 % new ids), creates a fresh
//! database on `CPI_BENCH_ADMIN_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), and times:
//! - append: `psql \copy t FROM file CSV HEADER` vs `cpi import` (append);
//! - upsert: psql COPY into a temp table + `INSERT … ON CONFLICT (id) DO
//!   UPDATE` in one transaction vs `cpi import` (upsert), both onto the
//!   loaded table after `VACUUM ANALYZE` (as autovacuum leaves any real
//!   table: the merge's plan depends on its statistics).
//!
//! - upsert with five checks (`not_null`, `unique`, `range`, `matches`,
//!   `expression`) vs the same upsert without: the cost of a data contract.
//! - append with every dialect and shape decision left to the sniffer
//!   (`encoding`, `delimiter`, `quote`, `header`, `skip_lines: auto`) vs the
//!   same append with them given: the cost of auto-detection.
//!
//! Each figure is the median of 3 rounds (`BENCH_REPEAT`), psql and cpi
//! alternating, with the load average beside it. cpi runs as the real
//! release binary; its peak RSS is its VmHWM. For profiling: `BENCH_DIR`
//! keeps the generated files, `BENCH_CPI_LOG=cpi=debug` prints cpi's
//! per-import timings, `BENCH_KEEP_DB=1` keeps the database.

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use bench_support::{row, TABLE};

fn generate(dir: &Path, rows: u64) -> (PathBuf, PathBuf) {
    let base = dir.join("base.csv");
    let changed = dir.join("changed.csv");
    let header = "id,name,email,amount,qty,created_at,active,note";
    let mut w = BufWriter::new(std::fs::File::create(&base).unwrap());
    writeln!(w, "{header}").unwrap();
    for id in 1..=rows {
        row(&mut w, id, 0).unwrap();
    }
    w.flush().unwrap();
    let mut w = BufWriter::new(std::fs::File::create(&changed).unwrap());
    writeln!(w, "{header}").unwrap();
    for id in 1..=rows {
        // 30 % of the rows change.
        row(&mut w, id, if id % 10 < 3 { 1 } else { 0 }).unwrap();
    }
    for id in rows + 1..=rows + rows / 10 {
        row(&mut w, id, 0).unwrap();
    }
    w.flush().unwrap();
    (base, changed)
}

fn cpi_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/release/examples/bench_import → target/release/cpi
    let bin = exe.parent().unwrap().parent().unwrap().join("cpi");
    if !bin.exists() {
        let ok = Command::new("cargo")
            .args(["build", "--release", "--bin", "cpi"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "cargo build --release --bin cpi failed");
    }
    bin
}

/// One timed command: wall time, its peak RSS, and the CPU time it and
/// the server processes serving it used. CPU seconds stay comparable on a
/// shared machine, where wall times wait for a core.
struct Run {
    wall: Duration,
    peak_kib: u64,
    client_cpu: f64,
    server_cpu: f64,
    stdout: String,
}

/// utime + stime of a process (all its threads), in seconds; its parent.
fn cpu_of(pid: u32) -> Option<(f64, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let f: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some((ticks as f64 / 100.0, f.get(1)?.parse().ok()?))
}

/// Runs `cmd` to its end, polling /proc: the child's VmHWM and CPU, and
/// the CPU of the postmaster's children serving database `db` (their
/// process title names it). Polling every 10 ms misses at most that
/// much of a backend's CPU.
fn timed(mut cmd: Command, postmaster: u32, db: &str) -> Run {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (mut peak, mut client_cpu) = (0u64, 0f64);
    // pid → CPU seen last (None: a process of someone else).
    let mut backends: std::collections::HashMap<u32, Option<f64>> = Default::default();
    let needle = format!(" {db} ");
    loop {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
        }
        if let Some((c, _)) = cpu_of(pid) {
            client_cpu = client_cpu.max(c);
        }
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if matches!(backends.get(&p), Some(None)) {
                continue;
            }
            let Some((c, parent)) = cpu_of(p) else {
                continue;
            };
            if parent != postmaster {
                backends.insert(p, None);
                continue;
            }
            let ours = backends.get(&p).is_some_and(Option::is_some)
                || std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|t| String::from_utf8_lossy(&t).contains(&needle));
            if ours {
                backends.insert(p, Some(c));
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = start.elapsed();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // cpi's log (BENCH_CPI_LOG) goes on stderr.
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Run {
        wall,
        peak_kib: peak,
        client_cpu,
        server_cpu: backends.values().flatten().sum(),
        stdout,
    }
}

fn psql(url: &str, args: &[&str], postmaster: u32, db: &str) -> Run {
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url])
        .args(args);
    timed(cmd, postmaster, db)
}

fn run_cpi(bin: &Path, url: &str, file: &Path, postmaster: u32, db: &str) -> Run {
    let mut cmd = Command::new(bin);
    cmd.args(["import", "--project", "bench", file.to_str().unwrap()])
        .args(["--database-url", url])
        .env_remove("CPI_DATABASE_URL")
        // BENCH_CPI_LOG=cpi=debug shows each import's copy/merge/commit
        // timings.
        .env(
            "CPI_LOG",
            std::env::var("BENCH_CPI_LOG").unwrap_or_else(|_| "warn".into()),
        );
    timed(cmd, postmaster, db)
}

/// The 1-minute load average: the machine may be shared, so every figure
/// is printed beside it.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Runs each `;`-separated statement on its own (VACUUM cannot run in
/// the implicit transaction of a multi-statement query).
async fn exec(url: &str, sql: &str) {
    let mut c = PgConnection::connect(url).await.unwrap();
    for stmt in sql.split(";\n").filter(|s| !s.trim().is_empty()) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
            .execute(&mut c)
            .await
            .unwrap();
    }
    c.close().await.unwrap();
}

#[tokio::main]
async fn main() {
    let rows: u64 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("BENCH_ROWS").ok())
        .map(|s| s.replace('_', "").parse().expect("ROWS must be a number"))
        .unwrap_or(1_000_000);
    let admin = std::env::var("CPI_BENCH_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let bin = cpi_binary();
    let tmp = tempfile::tempdir().unwrap();
    // BENCH_DIR keeps the generated files (for profiling).
    let dir_path =
        std::env::var("BENCH_DIR").map_or_else(|_| tmp.path().to_path_buf(), PathBuf::from);
    let t = Instant::now();
    let (base, changed) = generate(&dir_path, rows);
    let checked = dir_path.join("checked.csv");
    let _ = std::fs::remove_file(&checked);
    std::fs::hard_link(&changed, &checked).unwrap();
    // The base file under another name, every dialect and shape decision
    // left to the sniffer: the cost of auto-detection.
    let auto = dir_path.join("auto.csv");
    let _ = std::fs::remove_file(&auto);
    std::fs::hard_link(&base, &auto).unwrap();
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64 / 1e6;
    println!(
        "generated {rows} rows: base.csv {:.1} MB, changed.csv {:.1} MB in {:.1} s",
        size(&base),
        size(&changed),
        t.elapsed().as_secs_f64()
    );

    let db = format!("cpi_bench_{}", uuid::Uuid::new_v4().simple());
    exec(&admin, &format!("CREATE DATABASE {db}")).await;
    let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
    exec(&url, TABLE).await;
    let pool = cpi::store::connect(&cpi::secret::Secret::new(url.clone()))
        .await
        .unwrap();
    cpi::store::migrate(&pool).await.unwrap();
    let config = serde_json::json!({"name": "bench", "tables": [
        {"file_pattern": "base.csv", "table": "t", "mode": "append"},
        {"file_pattern": "auto.csv", "table": "t", "mode": "append", "encoding": "auto",
         "delimiter": "auto", "quote": "auto", "header": "auto", "skip_lines": "auto"},
        {"file_pattern": "changed.csv", "table": "t", "mode": "upsert", "primary_key": "id"},
        // The same file under another name, with a contract of five checks.
        {"file_pattern": "checked.csv", "table": "t", "mode": "upsert", "primary_key": "id", "checks": [
            {"check": "not_null", "columns": ["id", "email"]},
            {"check": "unique", "columns": "id"},
            {"check": "range", "column": "amount", "min": 0},
            {"check": "matches", "column": "email", "pattern": "^[^@]+@[^@]+$"},
            {"check": "expression", "name": "qty_positive", "sql": "qty >= 0"},
        ]},
    ]});
    let conn: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO cpi_connections (name, database_url) VALUES ('bench', $1) RETURNING id",
    )
    .bind(&url)
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO cpi_projects (name, connection_id, config) VALUES ('bench', $1, $2)")
        .bind(conn)
        .bind(config)
        .execute(&pool)
        .await
        .unwrap();
    // Each round is a first import of its file: the ledger and the job
    // history are emptied, or a file the size of an earlier job's would be
    // hashed before loading (cpi's check for a likely duplicate), a pass
    // over the file that a new file does not pay.
    let reset =
        "TRUNCATE t;\nDELETE FROM cpi.imported_files;\nDELETE FROM cpi_import_jobs;\nCHECKPOINT;\n";
    for statement in cpi::import::sql::CREATE_LEDGER {
        exec(&url, statement).await;
    }

    let script = dir_path.join("upsert.sql");
    std::fs::write(
        &script,
        format!(
            "BEGIN;
CREATE TEMP TABLE s (LIKE t INCLUDING DEFAULTS) ON COMMIT DROP;
\\copy s FROM '{}' CSV HEADER
INSERT INTO t SELECT * FROM s ON CONFLICT (id) DO UPDATE SET
  name = EXCLUDED.name, email = EXCLUDED.email, amount = EXCLUDED.amount, qty = EXCLUDED.qty,
  created_at = EXCLUDED.created_at, active = EXCLUDED.active, note = EXCLUDED.note;
COMMIT;
",
            changed.display()
        ),
    )
    .unwrap();
    let restore = "TRUNCATE t;\nINSERT INTO t SELECT * FROM t_base;\nDELETE FROM cpi.imported_files;\nDELETE FROM cpi_import_jobs;\nVACUUM ANALYZE t;\nCHECKPOINT;\n";
    let copy_base = format!("\\copy t FROM '{}' CSV HEADER", base.display());

    // The machine may be shared: each figure is the median of REPEAT runs
    // (BENCH_REPEAT, default 3), psql and cpi alternating.
    let repeat: usize = std::env::var("BENCH_REPEAT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let postmaster = {
        let mut c = PgConnection::connect(&url).await.unwrap();
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut c)
            .await
            .unwrap();
        cpu_of(backend as u32)
            .expect("the server runs on this machine")
            .1
    };
    // [append, upsert] × rounds, each a (psql, cpi) pair.
    let mut pairs: [Vec<(Run, Run)>; 2] = [vec![], vec![]];
    // The server's side of a binary COPY of the same rows, with no client
    // work to speak of (psql sends a file cpi's encoding would produce):
    // how fast any client of this server can append them.
    let binary = dir_path.join("base.bin");
    let mut floor: Vec<Run> = vec![];
    let mut with_checks: Vec<Run> = vec![];
    let mut with_auto: Vec<Run> = vec![];
    for round in 0..repeat {
        exec(&url, reset).await;
        let p = psql(&url, &["-c", &copy_base], postmaster, &db);
        exec(&url, reset).await;
        let c = run_cpi(&bin, &url, &base, postmaster, &db);
        if round == 0 {
            print!("{}", c.stdout);
            // The loaded table is the starting point of both upserts.
            exec(&url, "CREATE TABLE t_base AS SELECT * FROM t").await;
            let dump = format!("\\copy t TO '{}' (FORMAT binary)", binary.display());
            psql(&url, &["-c", &dump], postmaster, &db);
        }
        pairs[0].push((p, c));
        // Right after the plain append, so a busy moment weighs on both.
        exec(&url, reset).await;
        let a = run_cpi(&bin, &url, &auto, postmaster, &db);
        if round == 0 {
            print!("{}", a.stdout);
        }
        println!(
            "round {}: append with auto-detection cpi {:.2} s (load {})",
            round + 1,
            a.wall.as_secs_f64(),
            load()
        );
        with_auto.push(a);
        exec(&url, reset).await;
        let load_binary = format!("\\copy t FROM '{}' (FORMAT binary)", binary.display());
        floor.push(psql(&url, &["-c", &load_binary], postmaster, &db));
        exec(&url, restore).await;
        let p = psql(&url, &["-f", script.to_str().unwrap()], postmaster, &db);
        exec(&url, restore).await;
        let c = run_cpi(&bin, &url, &changed, postmaster, &db);
        if round == 0 {
            print!("{}", c.stdout);
        }
        pairs[1].push((p, c));
        exec(&url, restore).await;
        let k = run_cpi(&bin, &url, &checked, postmaster, &db);
        if round == 0 {
            print!("{}", k.stdout);
        }
        println!(
            "round {}: upsert with five checks cpi {:.2} s (load {})",
            round + 1,
            k.wall.as_secs_f64(),
            load()
        );
        with_checks.push(k);
        let f = floor.last().unwrap();
        println!(
            "round {}: append psql binary \\copy (the server's floor) {:.2} s; CPU s psql {:.2} + {:.2}",
            round + 1,
            f.wall.as_secs_f64(),
            f.client_cpu,
            f.server_cpu
        );
        for (name, v) in ["append", "upsert"].iter().zip(&pairs) {
            let (p, c) = v.last().unwrap();
            println!(
                "round {}: {name} psql {:.2} s / cpi {:.2} s = {:.2}×; CPU s (client + server) psql {:.2} + {:.2}, cpi {:.2} + {:.2} (load {})",
                round + 1,
                p.wall.as_secs_f64(),
                c.wall.as_secs_f64(),
                p.wall.as_secs_f64() / c.wall.as_secs_f64(),
                p.client_cpu,
                p.server_cpu,
                c.client_cpu,
                c.server_cpu,
                load()
            );
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!();
    println!(
        "rows: {rows} (changed file: {} rows), median of {repeat} paired round(s), load average now {}",
        rows + rows / 10,
        load()
    );
    for ((name, what, goal), v) in [
        ("append", "psql \\copy", "1.6"),
        ("upsert", "psql COPY + INSERT … ON CONFLICT", "2.0"),
    ]
    .iter()
    .zip(&pairs)
    {
        let wall = |f: fn(&(Run, Run)) -> &Run| {
            median(v.iter().map(|r| f(r).wall.as_secs_f64()).collect())
        };
        let ratio = median(
            v.iter()
                .map(|(p, c)| p.wall.as_secs_f64() / c.wall.as_secs_f64())
                .collect(),
        );
        let cpu = |r: &Run| r.client_cpu + r.server_cpu;
        let cpu_ratio = median(v.iter().map(|(p, c)| cpu(p) / cpu(c)).collect());
        println!(
            "{name}: {what} {:.2} s, cpi {:.2} s → ratio {ratio:.2}× (goal ≥ {goal}×); CPU seconds ratio {cpu_ratio:.2}×",
            wall(|r| &r.0),
            wall(|r| &r.1),
        );
    }
    let floor_s = median(floor.iter().map(|f| f.wall.as_secs_f64()).collect());
    let cpi_append = median(pairs[0].iter().map(|(_, c)| c.wall.as_secs_f64()).collect());
    let psql_append = median(pairs[0].iter().map(|(p, _)| p.wall.as_secs_f64()).collect());
    println!(
        "append floor: psql binary \\copy {floor_s:.2} s (psql CSV / binary: {:.2}×; cpi takes {:.2}× the floor's time)",
        psql_append / floor_s,
        cpi_append / floor_s
    );
    // Paired by round (each checked upsert ran right after its plain one),
    // so that a busy moment of the machine weighs on both sides.
    let extra = median(
        pairs[1]
            .iter()
            .zip(&with_checks)
            .map(|((_, c), k)| k.wall.as_secs_f64() / c.wall.as_secs_f64() - 1.0)
            .collect(),
    );
    let checked_s = median(with_checks.iter().map(|k| k.wall.as_secs_f64()).collect());
    println!(
        "checks: upsert with five checks {checked_s:.2} s; their cost, median of the rounds' pairs: +{:.1} % (goal ≤ 25 %)",
        extra * 100.0
    );
    let sniffing = median(
        pairs[0]
            .iter()
            .zip(&with_auto)
            .map(|((_, c), a)| a.wall.as_secs_f64() / c.wall.as_secs_f64() - 1.0)
            .collect(),
    );
    println!(
        "auto-detection (encoding, delimiter, quote, header, skip_lines: auto): append {:.2} s; its cost, median of the rounds' pairs: {:+.1} % (goal ≤ 5 %)",
        median(with_auto.iter().map(|a| a.wall.as_secs_f64()).collect()),
        sniffing * 100.0
    );
    let rss =
        |i: usize| pairs[i].iter().map(|(_, c)| c.peak_kib).max().unwrap_or(0) as f64 / 1024.0;
    println!(
        "cpi peak RSS (max of all runs): append {:.1} MiB, upsert {:.1} MiB (goal ≤ 64 MiB)",
        rss(0),
        rss(1)
    );
    pool.close().await;
    if std::env::var_os("BENCH_KEEP_DB").is_some() {
        // For EXPLAIN of the merge afterwards: t holds the upserted rows,
        // t_base the loaded ones.
        println!("kept database {db} (BENCH_KEEP_DB)");
    } else {
        exec(&admin, &format!("DROP DATABASE {db} WITH (FORCE)")).await;
    }
}
