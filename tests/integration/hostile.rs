//! Hostile input and faults (issue 11): inboxes confined by `--inbox-root`,
//! bounded manifests, and the daemon's refusals, on the real binary, the
//! real API server and the real daemon.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::api::support::{Server, TOKEN};
use crate::common::{write, TestDb};
use crate::daemon::{eventually, Setup};
use crate::support::cpi_command;

const PROJECT: &str = "apiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: p\nspec:\n  connection: c\n  config:\n    inbox: INBOX\n";
const CONN: &str = "apiVersion: cpi/v1\nkind: Connection\nmetadata:\n  name: c\nspec:\n  database_url: postgresql://u@h/db\n";

/// `cpi validate` on `manifests` under `/usr/bin/time`: (exit code, output,
/// seconds, peak RSS in KiB).
fn validate_measured(manifests: &Path, extra: &[&str]) -> (i32, String, f64, u64) {
    let cpi = cpi_command();
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "RSS_KIB=%M"])
        .arg(cpi.get_program())
        .args(["validate", "--manifests", manifests.to_str().unwrap()])
        .args(extra)
        .env_remove("CPI_INBOX_ROOTS")
        .output()
        .expect("/usr/bin/time (Debian package `time`)");
    let secs = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("RSS_KIB="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(u64::MAX);
    let text = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), text, secs, rss)
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

#[test]
fn yaml_tabs_are_named() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    write(
        &m,
        "c.yaml",
        &CONN.replace("  database_url", "\tdatabase_url"),
    );
    let (code, out, _, _) = validate_measured(&m, &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("c.yaml:6:1: a tab in the indentation"),
        "{out}"
    );
}

async fn server_with_roots(roots: Vec<std::path::PathBuf>) -> Server {
    let db = TestDb::new().await;
    let pool = cpi::store::connect(&cpi::secret::Secret::new(db.url()))
        .await
        .unwrap();
    cpi::store::migrate(&pool).await.unwrap();
    let mut state = cpi::api::AppState::new(
        pool.clone(),
        Some(cpi::secret::Secret::new(TOKEN)),
        Arc::new(cpi::metrics::Health::new()),
    );
    state.inbox_roots = Arc::new(roots);
    Server::serve(db, pool, state).await
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
    let jobs = crate::daemon::scalar_i64(&pool, "SELECT count(*) FROM cpi_import_jobs").await;
    assert_eq!(jobs, 0);
    let _ = tx.send(());
    daemon.await.unwrap().unwrap();
}
