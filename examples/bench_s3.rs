//! Object-storage inboxes against folders, in one run on this machine
//! (issue 15).
//!
//! `cargo build --release && cargo run --release --example bench_s3 [-- OPTIONS]`
//!
//! Options (or environment variables):
//! - `--rows N` (`BENCH_ROWS`, default 1,000,000): rows of the big file
//!   (bench_import's base file: same generator, ~110 bytes a row);
//! - `--files N` (`BENCH_FILES`, default 1000): small files (20 rows each);
//! - `--rounds N` (`BENCH_ROUNDS`, default 3): alternating rounds; medians.
//!
//! Starts `moto_server` (PyPI `moto[server]`) on a free loopback port, then:
//! 1. `cpi import` (append) of the big file from disk and as an object
//!    (`s3://bench/in/base.csv`), alternating; wall time and peak RSS
//!    (VmHWM) of the release binary;
//! 2. the real `cpi run` (2 workers, `--rescan 1s`, `--settle 200ms`) on
//!    FILES small files, in a folder inbox and in an `s3://` inbox: from
//!    the daemon's start to "all rows committed" (the listing or settle
//!    delay included, each object copied to processed/ and deleted).
//!
//! moto keeps objects in memory in one Python process: it is far slower
//! than S3 per request; read the object figures as a floor.

#[path = "bench_support/mod.rs"]
mod bench_support;

use bench_support::{arg, row, TABLE};

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use sqlx::{Connection, PgConnection};

struct Moto(Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn moto() -> Moto {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (pip install 'moto[server]')");
    let m = Moto(child, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    m
}

fn client(endpoint: &str) -> aws_sdk_s3::Client {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "bench", "bench", None, None, "bench",
            ))
            .http_client(http)
            .build(),
    )
}

const AWS_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "bench"),
    ("AWS_SECRET_ACCESS_KEY", "bench"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// Runs `cpi import` of `file`; (wall time, peak RSS KiB).
fn run_import(bin: &Path, url: &str, file: &str) -> (Duration, u64) {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .args(["import", "--project", "bench", file, "--database-url", url])
        .env_remove("CPI_DATABASE_URL")
        .env("CPI_LOG", "warn")
        .envs(AWS_ENV.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
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
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "cpi import {file} failed");
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (start.elapsed(), peak)
}

async fn exec(url: &str, sql: &str) {
    let mut c = PgConnection::connect(url).await.unwrap();
    for stmt in sql.split(";\n").filter(|s| !s.trim().is_empty()) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(stmt.to_string()))
            .execute(&mut c)
            .await
            .unwrap();
    }
    c.close().await.unwrap();
}

async fn count(url: &str, sql: &str) -> i64 {
    let mut c = PgConnection::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    n
}

fn median(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

/// A manifests folder: Connection `bench` to `url`, one Project `name`
/// with `config` (YAML lines, indented by the caller's 4 spaces).
fn manifests(dir: &Path, url: &str, name: &str, config: &str) -> PathBuf {
    let m = dir.join(format!("manifests-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(m.join("projects")).unwrap();
    std::fs::write(
        m.join("conn.yaml"),
        format!("apiVersion: cpi/v1\nkind: Connection\nmetadata: {{name: bench}}\nspec: {{database_url: \"{url}\"}}\n"),
    )
    .unwrap();
    std::fs::write(
        m.join(format!("projects/{name}.yaml")),
        format!("apiVersion: cpi/v1\nkind: Project\nmetadata: {{name: {name}}}\nspec:\n  connection: bench\n  config:\n{config}"),
    )
    .unwrap();
    m
}

/// Starts `cpi run` on `m` and waits until `want` rows are in `s`.
async fn daemon_until(bin: &Path, url: &str, m: &Path, want: i64) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .args([
            "run",
            "--manifests",
            m.to_str().unwrap(),
            "--database-url",
            url,
        ])
        .args(["--rescan", "1s", "--settle", "200ms", "--workers", "2"])
        .env_remove("CPI_DATABASE_URL")
        .env("CPI_LOG", "warn")
        .envs(AWS_ENV.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    loop {
        if count(url, "SELECT count(*) FROM s").await >= want {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "the daemon did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = start.elapsed();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    t
}

/// What the store alone needs for the small files' objects: they are put
/// under `prefix`, then timed from one paged listing to each object read
/// whole, copied to `prefix/processed/` and deleted, two at a time (the
/// daemon's two workers), with no database at all.
async fn object_floor(s3: &aws_sdk_s3::Client, prefix: &str, bodies: Vec<String>) -> Duration {
    for (f, b) in bodies.into_iter().enumerate() {
        s3.put_object()
            .bucket("bench")
            .key(format!("{prefix}f{f:05}.csv"))
            .body(ByteStream::from(b.into_bytes()))
            .send()
            .await
            .unwrap();
    }
    let t = Instant::now();
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("bench")
            .prefix(prefix)
            .delimiter("/")
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let mut work = tokio::task::JoinSet::new();
    for key in keys {
        let (s3, prefix) = (s3.clone(), prefix.to_string());
        work.spawn(async move {
            let got = s3
                .get_object()
                .bucket("bench")
                .key(&key)
                .send()
                .await
                .unwrap();
            let _ = got.body.collect().await.unwrap();
            let name = key.rsplit('/').next().unwrap();
            s3.copy_object()
                .copy_source(format!("bench/{key}"))
                .bucket("bench")
                .key(format!("{prefix}processed/{name}"))
                .send()
                .await
                .unwrap();
            s3.delete_object()
                .bucket("bench")
                .key(&key)
                .send()
                .await
                .unwrap();
        });
        if work.len() >= 2 {
            work.join_next().await;
        }
    }
    while work.join_next().await.is_some() {}
    t.elapsed()
}

#[tokio::main]
async fn main() {
    let rows = arg("--rows", "BENCH_ROWS", 1_000_000);
    let files = arg("--files", "BENCH_FILES", 1000);
    let rounds = arg("--rounds", "BENCH_ROUNDS", 3) as usize;
    let bin = bench_support::release_binary();
    let server = moto().await;
    let endpoint = format!("http://127.0.0.1:{}", server.1);
    let s3 = client(&endpoint);
    s3.create_bucket().bucket("bench").send().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // 1. The big file, from disk and as an object.
    let base = tmp.path().join("base.csv");
    {
        let mut w = BufWriter::new(std::fs::File::create(&base).unwrap());
        writeln!(w, "id,name,email,amount,qty,created_at,active,note").unwrap();
        for id in 1..=rows {
            row(&mut w, id, 0).unwrap();
        }
        w.flush().unwrap();
    }
    let size = std::fs::metadata(&base).unwrap().len();
    s3.put_object()
        .bucket("bench")
        .key("in/base.csv")
        .body(ByteStream::from_path(&base).await.unwrap())
        .send()
        .await
        .unwrap();
    let db = bench_support::fresh_database("cpi_bench_s3").await;
    let url = db.url.clone();
    exec(&url, TABLE).await;
    exec(
        &url,
        "CREATE TABLE s (id bigint PRIMARY KEY, store text, amount numeric, at timestamptz)",
    )
    .await;
    for statement in cpi::import::sql::CREATE_LEDGER {
        exec(&url, statement).await;
    }
    let storage = format!(
        "storage: {{endpoint: \"{endpoint}\", region: us-east-1, allow_http: true, path_style: true}}"
    );
    // No inbox: `cpi import` picks the options by the file's name.
    let config = format!(
        "    {storage}\n    tables: [{{file_pattern: base.csv, table: t, mode: append}}]\n"
    );
    let applied = Command::new(&bin)
        .args(["apply", "--database-url", &url, "--manifests"])
        .arg(manifests(tmp.path(), &url, "bench", &config))
        .env_remove("CPI_DATABASE_URL")
        .env("CPI_LOG", "warn")
        .status()
        .unwrap();
    assert!(applied.success());
    let reset = "TRUNCATE t;\nDELETE FROM cpi.imported_files;\nCHECKPOINT;\n";
    let (mut disk, mut object) = (Vec::new(), Vec::new());
    let (mut rss_disk, mut rss_object) = (0, 0);
    for round in 1..=rounds {
        exec(&url, reset).await;
        let (t, rss) = run_import(&bin, &url, base.to_str().unwrap());
        disk.push(t);
        rss_disk = rss_disk.max(rss);
        exec(&url, reset).await;
        let (u, rss) = run_import(&bin, &url, "s3://bench/in/base.csv");
        object.push(u);
        rss_object = rss_object.max(rss);
        println!(
            "round {round}: disk {:.2} s, object {:.2} s",
            t.as_secs_f64(),
            u.as_secs_f64()
        );
    }
    assert_eq!(count(&url, "SELECT count(*) FROM t").await, rows as i64);
    let (d, o) = (median(&mut disk), median(&mut object));
    println!(
        "big file ({rows} rows, {:.1} MB): disk {d:.2} s, object {o:.2} s → object at {:.2}× the disk speed (goal ≥ 0.8×)",
        size as f64 / 1e6,
        d / o
    );
    println!(
        "cpi peak RSS (max of all runs): disk {:.1} MiB, object {:.1} MiB (goal ≤ 64 MiB)",
        rss_disk as f64 / 1024.0,
        rss_object as f64 / 1024.0
    );

    // 2. Small files through the daemon: a folder inbox, an s3 inbox.
    let (mut folder_t, mut object_t) = (Vec::new(), Vec::new());
    let mut floor_t: Vec<Duration> = Vec::new();
    for round in 1..=rounds {
        let inbox = tmp.path().join(format!("inbox-{round}"));
        std::fs::create_dir_all(&inbox).unwrap();
        let mut bodies = Vec::new();
        for f in 0..files {
            let mut body = String::from("id,store,amount,at\n");
            for r in 0..20 {
                let id = (round as u64 * files + f) * 20 + r;
                body.push_str(&format!(
                    "{id},store-{f},{}.{:02},2024-06-01T10:00:00Z\n",
                    id % 997,
                    id % 100
                ));
            }
            bodies.push(body);
        }
        for (f, b) in bodies.iter().enumerate() {
            std::fs::write(inbox.join(format!("f{f:05}.csv")), b).unwrap();
        }
        exec(&url, "TRUNCATE s;\nDELETE FROM cpi.imported_files;\n").await;
        let config = format!(
            "    inbox: \"{}\"\n    defaults: {{table: s, mode: append}}\n",
            inbox.display()
        );
        let m = manifests(tmp.path(), &url, "small", &config);
        let t = daemon_until(&bin, &url, &m, files as i64 * 20).await;
        folder_t.push(t);

        let prefix = format!("small-{round}/");
        let floor_bodies = bodies.clone();
        let mut puts = tokio::task::JoinSet::new();
        for (f, b) in bodies.into_iter().enumerate() {
            let (s3, key) = (s3.clone(), format!("{prefix}f{f:05}.csv"));
            puts.spawn(async move {
                s3.put_object()
                    .bucket("bench")
                    .key(key)
                    .body(ByteStream::from(b.into_bytes()))
                    .send()
                    .await
                    .unwrap();
            });
            if puts.len() >= 16 {
                puts.join_next().await;
            }
        }
        while puts.join_next().await.is_some() {}
        exec(&url, "TRUNCATE s;\nDELETE FROM cpi.imported_files;\n").await;
        let config = format!(
            "    inbox: s3://bench/{prefix}\n    {storage}\n    defaults: {{table: s, mode: append}}\n"
        );
        let m = manifests(tmp.path(), &url, "small", &config);
        let u = daemon_until(&bin, &url, &m, files as i64 * 20).await;
        object_t.push(u);
        let floor = object_floor(&s3, &format!("floor-{round}/"), floor_bodies).await;
        floor_t.push(floor);
        println!(
            "round {round}: {files} small files: folder inbox {:.2} s, s3 inbox {:.2} s; the store's floor (list, get, copy, delete) {:.2} s",
            t.as_secs_f64(),
            u.as_secs_f64(),
            floor.as_secs_f64()
        );
    }
    let (f, o) = (median(&mut folder_t), median(&mut object_t));
    let fl = median(&mut floor_t);
    println!(
        "{files} small files through cpi run: folder {f:.2} s ({:.0} files/s), s3 {o:.2} s ({:.0} files/s) → {:.2}×",
        files as f64 / f,
        files as f64 / o,
        f / o
    );
    println!(
        "s3 listing-and-copy floor: {fl:.2} s for {files} objects (one listing, then each read, copied to processed/ and deleted, 2 at a time as the daemon's 2 workers); cpi run takes {:.2}× the floor",
        o / fl
    );
    drop(server);
    db.drop_db().await;
}
