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
//!   loaded table.
//!
//! cpi runs as the real release binary; its peak RSS is its VmHWM.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

const TABLE: &str = "CREATE TABLE t (
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

fn row(w: &mut impl Write, id: u64, version: u64) -> std::io::Result<()> {
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

fn psql(url: &str, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url])
        .args(args)
        .output()
        .expect("psql");
    let t = start.elapsed();
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t
}

/// Runs cpi, returns (wall time, peak RSS in KiB, stdout).
fn run_cpi(bin: &Path, url: &str, file: &Path) -> (Duration, u64, String) {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .args(["import", "--project", "bench", file.to_str().unwrap()])
        .args(["--database-url", url])
        .env_remove("CPI_DATABASE_URL")
        .env("CPI_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
        // VmHWM is the peak so far; read it until the process is gone.
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = start.elapsed();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "cpi failed: {stdout}");
    (t, peak, stdout)
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
        {"file_pattern": "changed.csv", "table": "t", "mode": "upsert", "primary_key": "id"},
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
    let reset = "TRUNCATE t;\nDELETE FROM cpi.imported_files;\nCHECKPOINT;\n";
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
    let restore = "TRUNCATE t;\nINSERT INTO t SELECT * FROM t_base;\nDELETE FROM cpi.imported_files;\nVACUUM ANALYZE t;\nCHECKPOINT;\n";
    let copy_base = format!("\\copy t FROM '{}' CSV HEADER", base.display());

    // The machine may be shared: each figure is the median of REPEAT runs
    // (BENCH_REPEAT, default 3), psql and cpi alternating.
    let repeat: usize = std::env::var("BENCH_REPEAT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let (mut pa, mut ca, mut pu, mut cu) = (vec![], vec![], vec![], vec![]);
    let (mut rss_append, mut rss_upsert) = (0, 0);
    for round in 0..repeat {
        exec(&url, reset).await;
        pa.push(psql(&url, &["-c", &copy_base]));
        exec(&url, reset).await;
        let (t, rss, out) = run_cpi(&bin, &url, &base);
        ca.push(t);
        rss_append = rss_append.max(rss);
        if round == 0 {
            print!("{out}");
            // The loaded table is the starting point of both upserts.
            exec(&url, "CREATE TABLE t_base AS SELECT * FROM t").await;
        }
        exec(&url, restore).await;
        pu.push(psql(&url, &["-f", script.to_str().unwrap()]));
        exec(&url, restore).await;
        let (t, rss, out) = run_cpi(&bin, &url, &changed);
        cu.push(t);
        rss_upsert = rss_upsert.max(rss);
        if round == 0 {
            print!("{out}");
        }
        println!(
            "round {}: append psql {:.2} s / cpi {:.2} s, upsert psql {:.2} s / cpi {:.2} s",
            round + 1,
            pa[round].as_secs_f64(),
            ca[round].as_secs_f64(),
            pu[round].as_secs_f64(),
            cu[round].as_secs_f64()
        );
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (psql_append, cpi_append) = (median(&mut pa), median(&mut ca));
    let (psql_upsert, cpi_upsert) = (median(&mut pu), median(&mut cu));

    let s = |d: Duration| d.as_secs_f64();
    println!();
    println!(
        "rows: {rows} (changed file: {} rows), median of {repeat} run(s)",
        rows + rows / 10
    );
    println!(
        "append: psql \\copy {:.2} s, cpi {:.2} s → ratio {:.2}× (goal ≥ 1.3×)",
        s(psql_append),
        s(cpi_append),
        s(psql_append) / s(cpi_append)
    );
    println!(
        "upsert: psql COPY + INSERT … ON CONFLICT {:.2} s, cpi {:.2} s → ratio {:.2}× (goal ≥ 1.5×)",
        s(psql_upsert),
        s(cpi_upsert),
        s(psql_upsert) / s(cpi_upsert)
    );
    println!(
        "cpi peak RSS (max of all runs): append {:.1} MiB, upsert {:.1} MiB (goal ≤ 64 MiB)",
        rss_append as f64 / 1024.0,
        rss_upsert as f64 / 1024.0
    );
    pool.close().await;
    exec(&admin, &format!("DROP DATABASE {db} WITH (FORCE)")).await;
}
