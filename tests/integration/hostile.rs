//! Hostile input and faults (issue 11): inboxes confined by `--inbox-root`,
//! bounded manifests, and the daemon's refusals, on the real binary, the
//! real API server and the real daemon.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::api::Server;
use crate::support::daemon::Setup;
use crate::support::{write, TestDb};

/// Polls `check` until it returns `Some`; fails the test naming `what`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    crate::support::wait::wait_for(what, timeout, check)
        .await
        .unwrap()
}
use crate::support::bin::succeed;
use crate::support::{cpi_command, Cpi};

const PROJECT: &str = "apiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: p\nspec:\n  connection: c\n  config:\n    inbox: INBOX\n";
const CONN: &str = "apiVersion: cpi/v1\nkind: Connection\nmetadata:\n  name: c\nspec:\n  database_url: postgresql://u@h/db\n";

/// `cpi validate` on `manifests` under `/usr/bin/time`: (exit code, output,
/// seconds, peak RSS in KiB).
fn validate_measured(manifests: &Path, extra: &[&str]) -> (i32, String, f64, u64) {
    let mut cpi = cpi_command();
    cpi.args(["validate", "--manifests", manifests.to_str().unwrap()])
        .args(extra)
        .env_remove("CPI_INBOX_ROOTS");
    let (run, took, rss) = crate::support::bin::measured(&cpi);
    let text = format!("{}{}", run.stdout, run.stderr);
    (run.code, text, took.as_secs_f64(), rss)
}

#[test]
fn validate_refuses_an_inbox_outside_the_root_with_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("inboxes");
    std::fs::create_dir_all(root.join("ok")).unwrap();
    let m = d.path().join("m");
    write(&m, "c.yaml", CONN);
    write(&m, "p.yaml", &PROJECT.replace("INBOX", "/etc"));
    let root_arg = root.to_str().unwrap();
    let (code, out, _, _) = validate_measured(&m, &["--inbox-root", root_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "p.yaml:8: config.inbox: \"/etc\" resolves to /etc which is outside every --inbox-root"
        ),
        "{out}"
    );
    // `..` is normalized; CPI_INBOX_ROOTS is `:`-separated.
    let escape = format!("{}/ok/../../m", root.display());
    write(&m, "p.yaml", &PROJECT.replace("INBOX", &escape));
    let run = cpi_command()
        .args(["validate", "--manifests", m.to_str().unwrap()])
        .env("CPI_INBOX_ROOTS", format!("/nonexistent:{root_arg}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(text.contains("outside every --inbox-root"), "{text}");
    // Inside: valid; without a root, manifests (reviewed in git) may use any path.
    write(
        &m,
        "p.yaml",
        &PROJECT.replace("INBOX", &format!("{root_arg}/ok")),
    );
    assert_eq!(validate_measured(&m, &["--inbox-root", root_arg]).0, 0);
    write(&m, "p.yaml", &PROJECT.replace("INBOX", "/etc"));
    assert_eq!(validate_measured(&m, &[]).0, 0);
    // `cpi run` takes the flag too (the deploy kit uses it).
    let help = cpi_command().args(["run", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--inbox-root <DIR>"));
}

/// The 122 KB file: a 1,000-entry `columns` map under an anchor,
/// then 10,000 aliases of it.
fn alias_bomb() -> String {
    let mut s = String::from(
        "apiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: p\nspec:\n  connection: c\n  config:\n    defaults: &e\n      columns:\n",
    );
    for i in 0..1000 {
        s.push_str(&format!("        c{i}: d{i}\n"));
    }
    s.push_str("    tables:\n");
    for _ in 0..10_000 {
        s.push_str("      - *e\n");
    }
    s
}

#[test]
fn an_alias_bomb_is_refused_in_under_a_second_and_100_mb() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    write(&m, "c.yaml", CONN);
    let bomb = alias_bomb();
    assert!((100_000..140_000).contains(&bomb.len()), "{}", bomb.len());
    write(&m, "p.yaml", &bomb);
    let (code, out, secs, rss) = validate_measured(&m, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("p.yaml:1: its aliases (*name) expand to about"),
        "{out}"
    );
    assert!(secs < 1.0, "took {secs} s");
    assert!(rss < 100 * 1024, "peak RSS {rss} KiB");
    // A file past the size cap is refused before it is parsed.
    write(&m, "p.yaml", &format!("# {}\n", "x".repeat(1_100_000)));
    let (code, out, _, _) = validate_measured(&m, &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("p.yaml: file is larger than 1024 KiB"),
        "{out}"
    );
}

#[test]
fn directory_symlink_loops_are_not_followed() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    write(&m, "c.yaml", CONN);
    write(&m, "sub/p.yaml", &PROJECT.replace("INBOX", "/srv/in"));
    std::os::unix::fs::symlink(".", m.join("self")).unwrap();
    std::os::unix::fs::symlink("..", m.join("sub/parent")).unwrap();
    std::os::unix::fs::symlink(".", m.join("sub/again")).unwrap();
    let (code, out, secs, rss) = validate_measured(&m, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 project(s) in 2 file(s): valid"), "{out}");
    assert!(
        out.contains("self: a symlink to a folder is not followed"),
        "{out}"
    );
    assert!(secs < 1.0, "took {secs} s");
    assert!(rss < 100 * 1024, "peak RSS {rss} KiB");
}

/// `cpi validate` on a folder holding only `c.yaml` with this text: (exit
/// code, output).
fn validate_connection(yaml: &str) -> (i32, String) {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    write(&m, "c.yaml", yaml);
    let (code, out, _, _) = validate_measured(&m, &[]);
    (code, out)
}

#[test]
fn yaml_tabs_are_named() {
    let (code, out) = validate_connection(&CONN.replace("  database_url", "\tdatabase_url"));
    assert_eq!(code, 1);
    assert!(
        out.contains("c.yaml:6:1: a tab in the indentation"),
        "{out}"
    );
}

async fn server_with_roots(roots: Vec<std::path::PathBuf>) -> Server {
    Server::start_adjusted(|state| state.inbox_roots = Arc::new(roots)).await
}

#[tokio::test]
async fn the_api_confines_inboxes_and_refuses_them_without_a_root() {
    let s = server_with_roots(Vec::new()).await;
    let r = s
        .post(
            "/projects",
            json!({"name": "p", "config": {"inbox": "/srv/in/p", "failed_dir": "/etc/cron.d"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("inbox: the API may only set") && r.text.contains("--inbox-root"),
        "{}",
        r.text
    );
    assert!(r.text.contains("failed_dir"), "{}", r.text);
    // No folder: allowed.
    assert_eq!(
        s.post("/projects", json!({"name": "q", "config": {}}))
            .await
            .status,
        201
    );
    s.stop().await;

    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("inboxes");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
    let s = server_with_roots(vec![root.clone()]).await;
    let inside = root.join("p").to_string_lossy().into_owned();
    for config in [
        json!({"inbox": "/etc"}),
        json!({"inbox": "/"}),
        json!({"inbox": "../../"}),
        json!({"inbox": ""}),
        json!({"inbox": format!("{inside}/../../x")}),
        json!({"inbox": root.join("link").join("x")}),
        json!({"inbox": inside, "processed_dir": "/root/.ssh"}),
        json!({"inbox": inside, "failed_dir": "../../.."}),
    ] {
        let r = s
            .post("/projects", json!({"name": "p", "config": config}))
            .await;
        assert_eq!(r.status, 400, "{config}: {}", r.text);
    }
    let r = s
        .post(
            "/projects",
            json!({"name": "p", "config": {"inbox": inside, "processed_dir": "done"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_string();
    let r = s
        .put(
            &format!("/projects/{id}"),
            json!({"config": {"inbox": "/etc"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_refuses_an_inbox_outside_the_root_and_says_so_in_readyz() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[]);
    let pool = db.pool().await;
    cpi::store::migrate(&pool).await.unwrap();
    // A row written before the root was set (or by an older version).
    let outside = s.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim.csv"), "id\n1\n").unwrap();
    let config = json!({"name": "evil", "inbox": outside, "defaults": {"file_pattern": "*"}});
    let mut conn = pool.acquire().await.unwrap();
    cpi::store::insert_project(&mut *conn, "evil", None, None, &config)
        .await
        .unwrap();
    drop(conn);
    let root = s.dir.path().join("inbox");
    std::fs::create_dir_all(&root).unwrap();
    let mut settings = cpi::daemon::Settings::new(s.manifests());
    settings.rescan = Duration::from_millis(300);
    settings.settle = Duration::from_millis(100);
    settings.inbox_roots = vec![root];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(cpi::daemon::run(
        settings,
        pool.clone(),
        Some(listener),
        async {
            let _ = rx.await;
        },
    ));
    let body: serde_json::Value = eventually(
        Duration::from_secs(20),
        "readyz names evil",
        || async move {
            let r = reqwest::get(format!("http://{addr}/readyz")).await.ok()?;
            let v: serde_json::Value = r.json().await.ok()?;
            v["refused_inboxes"]["evil"].is_string().then_some(v)
        },
    )
    .await;
    assert!(body["refused_inboxes"]["evil"]
        .as_str()
        .unwrap()
        .contains("outside every --inbox-root"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        outside.join("victim.csv").exists(),
        "the victim file was moved"
    );
    let jobs = crate::support::db::scalar_i64(&pool, "SELECT count(*) FROM cpi_import_jobs").await;
    assert_eq!(jobs, 0);
    let _ = tx.send(());
    daemon.await.unwrap().unwrap();
}

async fn server_with_http(http: cpi::api::server::HttpSettings) -> Server {
    Server::start_adjusted(|state| state.http = http).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_neither_block_healthz_nor_stay_open() {
    use tokio::io::AsyncReadExt;
    let s = server_with_http(cpi::api::server::HttpSettings {
        header_timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .await;
    let addr = s.base.trim_start_matches("http://").to_string();
    // 2,000 sockets that connect and send nothing (plus one slowloris that
    // dribbles a header line); the server holds one fd per socket too.
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut slow, b"GET /healthz HTTP/1.1\r\nX-A: 1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", s.base))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .expect("/healthz answers within a second beside 2,000 idle sockets");
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    // After the header timeout, the server has closed every one of them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    idle.push(slow);
    let mut open = 0;
    for mut sock in idle {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(200), sock.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {} // EOF, a 408 then EOF, or a reset: closed.
            Err(_) => open += 1,
        }
    }
    assert_eq!(open, 0, "sockets still open after the header timeout");
    s.stop().await;
}

#[tokio::test]
async fn headers_cors_paging_caps_and_bodies() {
    let s = server_with_http(cpi::api::server::HttpSettings {
        cors_origins: vec!["https://console.example".into()],
        ..Default::default()
    })
    .await;
    let r = s.get("/healthz").await;
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    let r = s.get("/nope").await;
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    // A response holding a URL is never cached.
    let r = s
        .post(
            "/connections",
            json!({"name": "c0", "database_url": "postgresql://u:s3cr3t@h/db"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_string();
    let r = s.get(&format!("/connections/{id}")).await;
    assert!(r.text.contains("s3cr3t"));
    assert_eq!(r.headers["cache-control"], "no-store");
    // CORS: the allowlisted origin only.
    let client = reqwest::Client::new();
    let pre = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{}/connections", s.base))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .send()
    };
    let ok = pre("https://console.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://console.example"
    );
    let other = pre("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // Paging.
    for i in 1..5 {
        let r = s
            .post(
                "/connections",
                json!({"name": format!("c{i}"), "database_url": "postgresql://u@h/db"}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let r = s.get("/connections?limit=2&offset=1").await;
    let names: Vec<_> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("c1"), json!("c2")]);
    assert_eq!(s.get("/connections?limit=1001").await.status, 400);
    assert_eq!(s.get("/projects?limit=1").await.status, 200);
    // Caps, bodies, every problem at once.
    let r = s
        .post("/connections", json!({"name": "big", "database_url": "postgresql://u@h/db", "description": "x".repeat(5000)}))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.text.contains("description: at most 4096 characters"),
        "{}",
        r.text
    );
    let r = s
        .post(
            "/connections",
            json!([{"name": "arr", "database_url": "postgresql://u@h/db"}]),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("must be a JSON object"), "{}", r.text);
    let r = s
        .post("/projects", json!({"name": "_bad", "connection_id": "00000000-0000-0000-0000-000000000001", "config": {}}))
        .await;
    assert_eq!(r.status, 400);
    let details = r.json["details"].to_string();
    assert!(
        details.contains("name:") && details.contains("connection_id:"),
        "{}",
        r.text
    );
    s.stop().await;
}

#[tokio::test]
async fn anonymous_jobs_hold_no_row_values_paths_or_workers() {
    let s = Server::start().await;
    let id = crate::support::db::insert_job(&s.pool, "p", "failed", 5).await;
    let ssn = "078-05-1120";
    sqlx::query(
        "UPDATE cpi_import_jobs SET worker = 'db-host-7:123:w0', file_path = '/srv/secret-inbox/f.csv',
                error = $2, error_details = $3 WHERE id = $1::uuid",
    )
    .bind(&id)
    .bind(format!("row 2: invalid input syntax for type integer: \"{ssn}\""))
    .bind(json!({"errors": [{"line": 2, "message": format!("bad value {ssn}"), "record": [ssn]}], "errors_total": 1, "errors_truncated": false}))
    .execute(&s.pool)
    .await
    .unwrap();
    for path in ["/jobs".to_string(), format!("/jobs/{id}")] {
        let anon = s.call_auth(reqwest::Method::GET, &path, None, None).await;
        assert_eq!(anon.status, 200);
        for leak in [ssn, "secret-inbox", "db-host-7"] {
            assert!(
                !anon.text.contains(leak),
                "{path} leaks {leak}: {}",
                anon.text
            );
        }
        assert!(anon.text.contains("errors_total"), "{}", anon.text);
        let full = s.get(&path).await;
        for shown in [ssn, "secret-inbox", "db-host-7"] {
            assert!(
                full.text.contains(shown),
                "{path} with the token lacks {shown}"
            );
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_move_is_retried_until_the_folder_is_writable_and_imports_once() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p", "{table: events, mode: append}")]);
    let pool = db.pool().await;
    crate::support::daemon::events_table(&pool).await;
    // `processed` is a plain file: the folder cannot be created (root
    // ignores permission bits, so a read-only folder would not stop it).
    let processed = s.inbox("p").join("processed");
    std::fs::write(&processed, "in the way").unwrap();
    let mut settings = cpi::daemon::Settings::new(s.manifests());
    settings.interval = Duration::from_secs(2);
    settings.rescan = Duration::from_millis(500);
    settings.settle = Duration::from_millis(200);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(cpi::daemon::run(settings, pool.clone(), None, async {
        let _ = rx.await;
    }));
    std::fs::write(
        s.inbox("p").join("a.csv"),
        crate::support::daemon::csv_rows(1, 5, "x"),
    )
    .unwrap();
    crate::support::wait::wait_i64(&pool, 30, "import", "SELECT count(*) FROM events", 5)
        .await
        .unwrap();
    // The move fails and is retried; the file waits in the inbox.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(s.inbox("p").join("a.csv").exists());
    std::fs::remove_file(&processed).unwrap();
    let fixed = Instant::now();
    eventually(Duration::from_secs(20), "a.csv in processed/", || {
        let p = processed.join("a.csv");
        async move { p.exists().then_some(()) }
    })
    .await;
    // Backoff at the fix: at most 4 s (after 0.5 + 1 + 2 s of failures).
    assert!(
        fixed.elapsed() < Duration::from_secs(6),
        "{:?}",
        fixed.elapsed()
    );
    assert!(!s.inbox("p").join("a.csv").exists());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let jobs = crate::support::db::scalar_i64(&pool, "SELECT count(*) FROM cpi_import_jobs").await;
    assert_eq!(jobs, 1, "imported once");
    assert_eq!(
        crate::support::db::scalar_i64(&pool, "SELECT count(*) FROM events").await,
        5
    );
    let _ = tx.send(());
    daemon.await.unwrap().unwrap();
}

/// A project appending to an empty table `t (a, b, c)`.
async fn appending_to_t() -> crate::support::import::Env {
    let env = crate::support::import::Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (a int, b text, c text)").await;
    env
}

/// Writes a CSV for `t` of 20,000 rows that compress neither too well nor
/// too badly, a line a write.
fn write_20k_rows(to: &mut impl std::io::Write) {
    writeln!(to, "a,b,c").unwrap();
    for i in 0..20_000 {
        writeln!(to, "{i},b{},c{}", i * 7919 % 10007, i % 13).unwrap();
    }
}

/// `good` damaged three ways, as `t1..t3.csv.EXT`: cut in half, bytes
/// flipped in the middle, the magic number broken.
fn damaged(ext: &str, good: &[u8]) -> [(String, Vec<u8>); 3] {
    let truncated = good[..good.len() / 2].to_vec();
    let mut flipped = good.to_vec();
    for i in (good.len() / 3..good.len() / 3 + 64).step_by(3) {
        flipped[i] ^= 0x5a;
    }
    let mut header = good.to_vec();
    header[0] = b'x';
    [
        (format!("t1.csv.{ext}"), truncated),
        (format!("t2.csv.{ext}"), flipped),
        (format!("t3.csv.{ext}"), header),
    ]
}

#[tokio::test]
async fn a_corrupt_gzip_file_gets_a_gzip_error() {
    let env = appending_to_t().await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    write_20k_rows(&mut gz);
    let good = gz.finish().unwrap();
    for (name, bytes) in damaged("gz", &good) {
        let o = env.try_import(&name, &bytes).await;
        let text = match o {
            Ok(o) => format!("{:?} {:?}", o.error, o.errors),
            Err(e) => e.to_string(),
        };
        assert!(text.contains("not a valid gzip file"), "{name}: {text}");
    }
    assert_eq!(env.count("t").await, 0);
}

#[tokio::test]
async fn a_failed_import_is_a_warn_with_its_first_error() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p", "{table: events, mode: append}")]);
    let pool = db.pool().await;
    cpi::store::migrate(&pool).await.unwrap();
    crate::support::daemon::events_table(&pool).await;
    let d = crate::support::daemon::Daemon::start(&db, &s.manifests(), &s.log("log"), &[]);
    std::fs::write(s.inbox("p").join("bad.csv"), "id,tag,n\n1,a,not-a-number\n").unwrap();
    let line = eventually(Duration::from_secs(30), "the WARN line", || {
        let log = d.log();
        async move {
            log.lines()
                .find(|l| l.contains("WARN") && l.contains("import failed"))
                .map(str::to_string)
        }
    })
    .await;
    assert!(
        line.contains("bad.csv") && line.contains("not-a-number"),
        "{line}"
    );
}

#[test]
fn a_duplicate_key_is_located_at_the_key() {
    let (code, out) = validate_connection(&format!("{CONN}  description: a\n  description: b\n"));
    assert_eq!(code, 1);
    assert!(
        out.contains("c.yaml:8:3: spec: duplicate field `description`"),
        "{out}"
    );
}

#[tokio::test]
async fn no_op_reconciles_add_no_rows() {
    let db = TestDb::new().await;
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    write(&m, "c.yaml", CONN);
    let apply = || {
        succeed(
            "cpi apply",
            &mut Cpi::new(["apply"]).db(&db).manifests(&m).command(),
        );
    };
    apply();
    let pool = db.pool().await;
    let runs = |pool: sqlx::PgPool| async move {
        crate::support::db::scalar_i64(&pool, "SELECT count(*) FROM cpi_reconcile_runs").await
    };
    assert_eq!(runs(pool.clone()).await, 1);
    for _ in 0..5 {
        apply();
    }
    // One row for the change, one for the streak of no-ops.
    assert_eq!(runs(pool.clone()).await, 2);
    let extended = crate::support::db::scalar_i64(
        &pool,
        "SELECT count(*) FROM cpi_reconcile_runs WHERE created = 0 AND finished_at - started_at > interval '0'",
    )
    .await;
    assert_eq!(extended, 1);
    // A change is a row of its own again.
    write(&m, "c.yaml", &CONN.replace("db\n", "db2\n"));
    apply();
    apply();
    assert_eq!(runs(pool).await, 4);
}

#[tokio::test]
async fn prune_deletes_finished_history_older_than_age() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    cpi::store::migrate(&pool).await.unwrap();
    let day = 86_400;
    let old = crate::support::db::insert_job(&pool, "p", "succeeded", 100 * day).await;
    crate::support::db::insert_job(&pool, "p", "failed", 100 * day).await;
    let recent = crate::support::db::insert_job(&pool, "p", "succeeded", 10 * day).await;
    let waiting = crate::support::db::insert_job(&pool, "p", "queued", 100 * day).await;
    sqlx::query("UPDATE cpi_import_jobs SET finished_at = NULL WHERE id = $1::uuid")
        .bind(&waiting)
        .execute(&pool)
        .await
        .unwrap();
    for days in [200, 100, 95] {
        sqlx::query(
            "INSERT INTO cpi_reconcile_runs (owner, trigger, status, drifted, started_at, finished_at)
             VALUES ('cpi', 'cli', 'succeeded', 1, now() - make_interval(days => $1), now() - make_interval(days => $1))",
        )
        .bind(days)
        .execute(&pool)
        .await
        .unwrap();
    }
    let out = succeed(
        "cpi prune",
        &mut Cpi::new(["prune", "--older-than", "90d"]).db(&db).command(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The latest run (95 days) is kept for /metrics.
    assert!(
        text.contains("pruned 2 job(s) and 2 reconcile run(s) older than 90d"),
        "{text}"
    );
    let left: Vec<(String,)> = sqlx::query_as("SELECT id::text FROM cpi_import_jobs ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut want = vec![recent, waiting];
    want.sort();
    assert_eq!(left.into_iter().map(|r| r.0).collect::<Vec<_>>(), want);
    assert!(!want.contains(&old));
    // `cpi run --retention` is off by default and takes an age.
    let help = cpi_command().args(["run", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--retention <RETENTION>"));
}

#[tokio::test]
async fn zstd_files_load_and_a_corrupt_one_gets_a_zstd_error() {
    let env = appending_to_t().await;
    let mut text = Vec::new();
    write_20k_rows(&mut text);
    let good = zstd::encode_all(&text[..], 3).unwrap();
    // Two frames one after the other (`cat a.zst b.zst`): both are read.
    let mut two = zstd::encode_all(&b"a,b,c\n1,x,y\n"[..], 1).unwrap();
    two.extend(zstd::encode_all(&b"2,z,w\n"[..], 1).unwrap());
    for (name, bytes, rows) in [
        ("good.csv.zst", &good, 20_000),
        ("two.csv.zst", &two, 20_002),
    ] {
        let o = env.import(name, bytes).await;
        assert_eq!(
            o.status,
            cpi::store::jobs::JobStatus::Succeeded,
            "{:?}",
            o.error
        );
        assert_eq!(env.count("t").await, rows);
    }
    for (name, bytes) in damaged("zst", &good) {
        let o = env.import(&name, &bytes).await;
        assert_eq!(o.status, cpi::store::jobs::JobStatus::Failed, "{name}");
        let error = o.error.unwrap_or_default();
        assert!(
            error.starts_with(&format!("{name}: ")) && error.contains("not a valid zstd file"),
            "{name}: {error}"
        );
    }
    assert_eq!(env.count("t").await, 20_002);
}
