//! The operator's daily loop: the line a bad row is reported on, the one
//! error of a broken `.csv.gz`, counters that never go down, the CLI in a
//! pipe and the error in `cpi jobs list`, the dashboard across replicas.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::support::daemon::Setup;
use crate::support::db::scalar_i64;
use crate::support::fs::tree;
use crate::support::import::Env;
use crate::support::wait::{exists, wait_i64};
use crate::support::{Cpi, Run, TestDb};

/// `cpi ARGS --database-url <the test database>`, off the runtime.
async fn cpi_on(env: &Env, args: &[&str]) -> Run {
    Cpi::new(args).db(&env.db).run_async().await
}

/// Project `p` appending into `t (id int, v text)`.
async fn appending_to_t() -> Env {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int, v text)").await;
    env
}

/// Writes `csv` as `name` and runs `cpi import --project p` on it, which
/// must exit `code`; the file's path.
async fn import(env: &Env, name: &str, csv: &[u8], code: i32) -> PathBuf {
    let file = env.file(name, csv);
    cpi_on(env, &["import", "--project", "p", path(&file)])
        .await
        .assert_code(code);
    file
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn regression_crlf_files_report_the_same_line_as_lf_files() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int, amount numeric)").await;
    let lf = "id,amount\n1,1.5\n2,2.5\n3,x\n4,4.5\n";
    let crlf = lf.replace('\n', "\r\n");
    // A blank line and a quoted field over two lines before the bad value
    // (line 6 in both).
    let multi = "id,amount\n1,1\n\n\"2\",\"2\n\"\n3,x\n";
    let multi_crlf = multi.replace('\n', "\r\n");
    for (name, text, line) in [
        ("lf.csv", lf.to_string(), 4),
        ("crlf.csv", crlf.clone(), 4),
        ("multi_lf.csv", multi.to_string(), 6),
        ("multi_crlf.csv", multi_crlf, 6),
    ] {
        let f = env.file(name, text.as_bytes());
        let r = cpi_on(&env, &["import", "--project", "p", path(&f)]).await;
        r.assert_code(1).assert_stdout(&format!(
            "{name}:{line}: column \"amount\": \"x\" is not a valid numeric"
        ));
    }
    // The library says the same, in the message and in the row error.
    for (name, text) in [("lib_lf.csv", lf.to_string()), ("lib_crlf.csv", crlf)] {
        let o = env.import(name, text.as_bytes()).await;
        let error = o.error.as_deref().unwrap_or_default();
        assert!(error.starts_with(&format!("{name}:4: ")), "{error}");
        assert_eq!(o.errors[0].line, 4, "{:?}", o.errors);
    }
    assert_eq!(env.count("t").await, 0);
}

#[tokio::test]
async fn regression_a_truncated_or_corrupt_gzip_reports_only_the_decompression_error() {
    let env = appending_to_t().await;
    // Stored (uncompressed) deflate blocks: the decoder hands out the bytes
    // as they come, so damage reaches the CSV parser before the checksum
    // or the missing end is noticed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    gz.write_all(b"id,v\n").unwrap();
    for i in 0..20_000u32 {
        writeln!(gz, "{i},value-{}-{}", i * 7919 % 1000, i % 13).unwrap();
    }
    let whole = gz.finish().unwrap();
    let mid = whole.len() / 2;
    // Cut in the middle of a line; and a comma written over one byte (a
    // row of 3 fields that the checksum at the end refutes).
    let truncated = &whole[..mid];
    let mut corrupt = whole.clone();
    corrupt[mid] = b',';
    for (name, bytes, verdict) in [
        ("z.csv.gz", truncated, "incomplete deflate stream"),
        (
            "c.csv.gz",
            &corrupt[..],
            "does not have a matching checksum",
        ),
    ] {
        let f = env.file(name, bytes);
        let r = cpi_on(&env, &["import", "--project", "p", path(&f)]).await;
        r.assert_code(1)
            .assert_stdout(&format!("{name}: not a valid gzip file"))
            .assert_stdout(verdict);
        // No `c.csv.gz:10308: expected 2 fields, found 3` beside it.
        let row_error = r
            .stdout
            .match_indices(&format!("{name}:"))
            .any(|(i, m)| r.stdout[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()));
        assert!(
            !row_error && !r.stdout.contains("fields"),
            "a row error beside the gzip verdict:\n{}",
            r.stdout
        );
    }
    let details: Vec<String> = env
        .rows("SELECT coalesce(error_details::text, '') FROM cpi_import_jobs")
        .await;
    assert!(details.iter().all(|d| !d.contains("fields")), "{details:?}");
    assert_eq!(env.count("t").await, 0);
}

/// Every counter sample of a Prometheus exposition: `name{labels}` → value.
fn counters(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut kinds = std::collections::BTreeMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut w = rest.split_whitespace();
            kinds.insert(w.next().unwrap().to_string(), w.next().unwrap().to_string());
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = l.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| kinds.get(*b).is_some_and(|k| k == "histogram"))
            .unwrap_or(name);
        if matches!(
            kinds.get(base).map(String::as_str),
            Some("counter" | "histogram")
        ) {
            out.insert(series.to_string(), value.parse().unwrap());
        }
    }
    out
}

#[tokio::test]
async fn regression_counters_never_go_down_when_history_is_pruned() {
    let env = appending_to_t().await;
    for i in 0..3 {
        let rows: String = (0..100).map(|n| format!("{},x\n", i * 100 + n)).collect();
        let f = env.file(&format!("ok{i}.csv"), format!("id,v\n{rows}").as_bytes());
        cpi_on(&env, &["import", "--project", "p", path(&f)])
            .await
            .assert_code(0);
    }
    import(&env, "bad.csv", b"id,v\nx,1\n", 1).await;
    env.exec(
        "INSERT INTO cpi_reconcile_runs (owner, trigger, status, drifted, finished_at)
         SELECT 'cpi', 'test', s, 2, now() - interval '1 hour'
           FROM unnest(ARRAY['succeeded', 'succeeded', 'failed']) AS s",
    )
    .await;

    // The API in-process, as the daemon serves it.
    let health = Arc::new(cpi::metrics::Health::with_reconciler());
    let state = cpi::api::AppState::new(env.pool.clone(), None, health);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cpi::api::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let scrape = || async {
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        counters(&text)
    };
    let before = scrape().await;
    assert_eq!(before["cpi_import_rows_total{outcome=\"inserted\"}"], 300.0);
    assert_eq!(
        before["cpi_import_jobs_finished_total{status=\"failed\"}"],
        1.0
    );
    assert!(before["cpi_reconcile_runs_total{status=\"succeeded\"}"] >= 2.0);
    assert!(before["cpi_import_duration_seconds_count"] >= 4.0);

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = cpi_on(&env, &["prune", "--older-than", "1s"]).await;
    r.assert_code(0).assert_stdout("pruned 4 job(s)");
    assert_eq!(env.count("cpi_import_jobs").await, 0);

    let after = scrape().await;
    for (series, was) in &before {
        let now = after.get(series).copied().unwrap_or(f64::NAN);
        assert!(now >= *was, "{series} went from {was} to {now}");
    }
    // And a counter keeps counting after the prune.
    import(&env, "ok3.csv", b"id,v\n1000,x\n1001,x\n", 0).await;
    let later = scrape().await;
    assert_eq!(later["cpi_import_rows_total{outcome=\"inserted\"}"], 302.0);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Spawns `cpi ARGS` with its stdout a pipe whose reader is closed at once
/// (as `| head` does once it has its lines); the exit code and stderr.
fn into_closed_pipe(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Cpi::new(args)
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn regression_printing_into_a_closed_pipe_ends_quietly_with_success() {
    for args in [&["completions", "bash"][..], &["schema"][..]] {
        let (code, stderr) = into_closed_pipe(args);
        assert_eq!(code, Some(0), "cpi {args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "cpi {args:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn regression_jobs_list_shows_the_first_line_of_the_error() {
    let env = appending_to_t().await;
    import(&env, "bad.csv", b"id,v\n1,a\nx,b\n", 1).await;
    let r = cpi_on(&env, &["jobs", "list"]).await;
    r.assert_code(0).assert_stdout("ERROR");
    let row = r
        .stdout
        .lines()
        .find(|l| l.contains("bad.csv") && l.contains("failed"))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(
        row.contains("bad.csv:3: column \"id\": \"x\" is not a valid integer"),
        "{row}"
    );
}

/// Every command's help repeated about ten global flags; there was no
/// `-o yaml`; `--output` named a path in `export`/`keygen` and a format
/// elsewhere.
#[tokio::test]
async fn regression_the_cli_shows_global_options_once_and_takes_o_yaml_and_file_destinations() {
    let help = crate::support::cpi(&["--help"]);
    help.assert_code(0);
    assert_eq!(
        help.stdout.matches("--database-url <").count(),
        1,
        "{}",
        help.stdout
    );
    for cmd in [&["jobs", "list"][..], &["import"], &["run"], &["validate"]] {
        let h = crate::support::cpi(&[cmd, &["--help"]].concat());
        h.assert_code(0);
        assert!(
            !h.stdout.contains("--database-url"),
            "{cmd:?}: {}",
            h.stdout
        );
        assert!(
            h.stdout.contains("see `cpi --help`"),
            "{cmd:?}: {}",
            h.stdout
        );
    }
    // Still taken after the command, as before.
    let env = appending_to_t().await;
    let good = env.file("good.csv", b"id,v\n1,a\n");
    let r = cpi_on(
        &env,
        &["import", "--project", "p", path(&good), "-o", "yaml"],
    )
    .await;
    r.assert_code(0);
    let imported: serde_yaml::Value = serde_yaml::from_str(&r.stdout).unwrap();
    assert_eq!(imported[0]["status"], "succeeded", "{}", r.stdout);
    let r = cpi_on(&env, &["jobs", "list", "-o", "yaml"]).await;
    r.assert_code(0);
    let listed: serde_yaml::Value = serde_yaml::from_str(&r.stdout).unwrap();
    assert_eq!(listed[0]["file_name"], "good.csv", "{}", r.stdout);
    assert_eq!(listed[0]["rows_inserted"], 1, "{}", r.stdout);

    // File destinations are `--file` / `--dir`; `--output` stays a hidden alias.
    let h = crate::support::cpi(&["keygen", "--help"]);
    assert!(
        h.stdout.contains("--file <FILE>") && !h.stdout.contains("--output"),
        "{}",
        h.stdout
    );
    let h = crate::support::cpi(&["export", "--help"]);
    assert!(
        h.stdout.contains("--dir <DIR>") && !h.stdout.contains("--output"),
        "{}",
        h.stdout
    );
    let dir = tempfile::tempdir().unwrap();
    for (flag, name) in [("--file", "a.key"), ("--output", "b.key")] {
        let key = dir.path().join(name);
        crate::support::cpi(&["keygen", flag, key.to_str().unwrap()]).assert_code(0);
        assert!(key.exists(), "{flag}");
    }
}

/// `cpi jobs show 3e21e279` answered `invalid length: found 8`; a finished
/// job kept the lease of its last run.
#[tokio::test]
async fn regression_jobs_take_a_unique_id_prefix_and_finished_jobs_hold_no_lease() {
    let env = appending_to_t().await;
    import(&env, "good.csv", b"id,v\n1,a\n", 0).await;
    let pool = env.db.pool().await;
    let (id,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM cpi_import_jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    let prefix = &id.to_string()[..8];
    let r = cpi_on(&env, &["jobs", "show", prefix, "-o", "json"]).await;
    r.assert_code(0);
    let shown: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(shown["id"], id.to_string());
    assert_eq!(shown["status"], "succeeded");
    assert!(shown["lease_expires_at"].is_null(), "{shown}");

    // A usage error, exit 1 as every usage error (docs/operations.md).
    cpi_on(&env, &["jobs", "show", &prefix[..5]])
        .await
        .assert_code(1)
        .assert_stderr("at least 6 hex digits");
    // A second job whose id shares the first 6 digits makes them ambiguous.
    let mut twin = *id.as_bytes();
    twin[15] ^= 1;
    sqlx::query(
        "INSERT INTO cpi_import_jobs (id, project_name, file_name, file_path, status)
         SELECT $1, project_name, 'twin.csv', '/nowhere/twin.csv', 'failed' FROM cpi_import_jobs WHERE id = $2",
    )
    .bind(uuid::Uuid::from_bytes(twin))
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    cpi_on(&env, &["jobs", "show", &prefix[..6]])
        .await
        .assert_code(1)
        .assert_stderr("is ambiguous");
    cpi_on(&env, &["jobs", "show", "ffffff"])
        .await
        .assert_code(1)
        .assert_stderr("no job has an id starting with ffffff");
}

#[test]
fn regression_the_dashboard_aggregates_replicas_with_max() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/observability/grafana-dashboard.json"),
    )
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    // Only these belong to the scraped process; every other metric is read
    // from the shared tables, the same on every replica.
    let process = ["cpi_watcher_errors_total", "cpi_import_target_errors_total"];
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            if expr.contains("sum") {
                assert!(
                    process.iter().any(|m| expr.contains(m)),
                    "sums a metric every replica reports: {expr}"
                );
            }
            assert!(
                !expr.contains("increase(cpi_import_jobs{")
                    && !expr.contains("rate(cpi_import_jobs{"),
                "increase() on a gauge: {expr}"
            );
        }
    }
}

/// The daemon in the test's runtime with the API token [`TOKEN`]; stopped
/// (and waited for) by [`Daemon::stop`].
struct Daemon {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), cpi::store::StoreError>>,
    addr: std::net::SocketAddr,
}

const TOKEN: &str = "daily-loop-token";

impl Daemon {
    async fn start(db: &TestDb, s: &Setup) -> Daemon {
        let mut settings = cpi::daemon::Settings::new(s.manifests());
        settings.interval = Duration::from_secs(2);
        settings.rescan = Duration::from_secs(1);
        settings.settle = Duration::from_millis(300);
        settings.lease = Duration::from_secs(3);
        settings.worker_prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        settings.api_token = Some(cpi::secret::Secret::new(TOKEN));
        // The pages are read without the token (anonymous viewer); with a
        // token configured that is no longer the default.
        settings.http.anonymous = cpi::access::Anonymous::Viewer;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(cpi::daemon::run(
            settings,
            db.pool().await,
            Some(listener),
            async move {
                let _ = rx.await;
            },
        ));
        Daemon {
            stop: Some(tx),
            task,
            addr,
        }
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new()
            .post(format!("http://{}{path}", self.addr))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("the daemon stops")
            .unwrap()
            .unwrap();
    }
}

/// The only job of file `name`: its id, status, path and attempts.
async fn job_of(pool: &sqlx::PgPool, name: &str) -> (uuid::Uuid, String, String, i32) {
    sqlx::query_as(
        "SELECT id, status, file_path, attempts FROM cpi_import_jobs WHERE file_name = $1",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Waits until the job of `name` is finished with `status`.
async fn finished(pool: &sqlx::PgPool, name: &str, status: &str) {
    let sql = format!(
        "SELECT count(*) FROM cpi_import_jobs WHERE file_name = '{name}' AND status = '{status}'"
    );
    wait_i64(pool, 20, &format!("{name} {status}"), &sql, 1)
        .await
        .unwrap();
}

/// Waits until the failure report of `name` is in `inbox/failed/`.
async fn reported(inbox: &std::path::Path, name: &str) {
    exists(
        &inbox.join(format!("failed/{name}.error.json")),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
}

/// Drops `csv` into `inbox` as `name` and waits until its job failed and
/// the file and its report are in `failed/`.
async fn fails(pool: &sqlx::PgPool, inbox: &std::path::Path, name: &str, csv: &str) {
    std::fs::write(inbox.join(name), csv).unwrap();
    finished(pool, name, "failed").await;
    reported(inbox, name).await;
}

/// The daemon on project `p` (appending into `events`), reconciled.
async fn daemon_on_p(db: &TestDb) -> (Setup, sqlx::PgPool, Daemon) {
    let (s, pool) = Setup::events(db).await;
    let d = Daemon::start(db, &s).await;
    wait_i64(
        &pool,
        20,
        "reconciled",
        "SELECT count(*) FROM cpi_projects",
        1,
    )
    .await
    .unwrap();
    (s, pool, d)
}

/// A file that fails in the daemon: `orders.csv` in `failed/` with its
/// report; the setup, a pool, the daemon and the job's id.
async fn failed_in_the_daemon(db: &TestDb) -> (Setup, sqlx::PgPool, Daemon, uuid::Uuid) {
    let (s, pool, d) = daemon_on_p(db).await;
    let inbox = s.inbox("p");
    fails(&pool, &inbox, "orders.csv", "id,tag,n\n1,a,1\n2,b,x\n").await;
    let (id, ..) = job_of(&pool, "orders.csv").await;
    (s, pool, d, id)
}

const FIXED: &str = "id,tag,n\n1,a,1\n2,b,2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_retry_leaves_files_in_the_wrong_place_through_the_daemon() {
    let db = TestDb::new().await;
    let (s, pool, d, id) = failed_in_the_daemon(&db).await;
    let inbox = s.inbox("p");
    let retry = format!("/jobs/{id}/retry");

    // Retried unfixed: it fails again, into the top-level failed/ with a
    // fresh report (not failed/failed/), and the job does not point there.
    let (code, body) = d.post(&retry, json!({})).await;
    assert_eq!(code, 200, "{body}");
    wait_i64(
        &pool,
        20,
        "the second attempt",
        &format!("SELECT count(*) FROM cpi_import_jobs WHERE id = '{id}' AND status = 'failed' AND attempts = 2"),
        1,
    )
    .await
    .unwrap();
    reported(&inbox, "orders.csv").await;
    assert_eq!(
        tree(&inbox),
        ["failed/orders.csv", "failed/orders.csv.error.json"]
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(inbox.join("failed/orders.csv.error.json")).unwrap())
            .unwrap();
    assert_eq!(report["job_id"], id.to_string());

    // Fixed in failed/, retried: in processed/ once, the report gone.
    std::fs::write(inbox.join("failed/orders.csv"), FIXED).unwrap();
    let (code, body) = d
        .post(&format!("{retry}?reason=fixed+row+2"), json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    finished(&pool, "orders.csv", "succeeded").await;
    exists(&inbox.join("processed/orders.csv"), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(tree(&inbox), ["processed/orders.csv"]);
    let (_, _, file_path, attempts) = job_of(&pool, "orders.csv").await;
    assert_eq!(attempts, 3, "one attempt per run");
    assert!(!file_path.contains("/failed/"), "{file_path}");
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 2);
    let retried = scalar_i64(
        &pool,
        &format!("SELECT count(*) FROM cpi_events WHERE kind = 'job.retried' AND job_id = '{id}'"),
    )
    .await;
    assert_eq!(retried, 2);
    let (who, why): (String, String) = sqlx::query_as(
        "SELECT payload->>'by', payload->>'reason' FROM cpi_events
          WHERE kind = 'job.retried' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((who.as_str(), why.as_str()), ("api", "fixed row 2"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_retry_of_a_file_that_is_gone_says_so_and_changes_nothing() {
    let db = TestDb::new().await;
    let (s, pool, d, id) = failed_in_the_daemon(&db).await;
    let inbox = s.inbox("p");
    std::fs::remove_file(inbox.join("failed/orders.csv")).unwrap();
    let before = job_of(&pool, "orders.csv").await;
    let (code, body) = d.post(&format!("/jobs/{id}/retry"), json!({})).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no longer exists"),
        "{body}"
    );
    assert_eq!(job_of(&pool, "orders.csv").await, before);
    assert_eq!(tree(&inbox), ["failed/orders.csv.error.json"]);
    let r = Cpi::new(["jobs", "retry", &id.to_string()])
        .db(&db)
        .run_async()
        .await;
    r.assert_code(1);
    assert!(r.stderr.contains("no longer exists"), "{}", r.all());
    assert_eq!(job_of(&pool, "orders.csv").await, before);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_retry_leaves_files_in_the_wrong_place_through_cpi_jobs_retry() {
    let db = TestDb::new().await;
    let (s, pool, d, id) = failed_in_the_daemon(&db).await;
    d.stop().await;
    let inbox = s.inbox("p");
    let retry = || {
        Cpi::new(["jobs", "retry", &id.to_string()])
            .db(&db)
            .run_async()
    };
    // Unfixed: failed again, at the top-level failed/ with a new report.
    retry().await.assert_code(1);
    assert_eq!(
        tree(&inbox),
        ["failed/orders.csv", "failed/orders.csv.error.json"]
    );
    // Fixed: loaded, in processed/ once, the report gone.
    std::fs::write(inbox.join("failed/orders.csv"), FIXED).unwrap();
    retry().await.assert_code(0);
    assert_eq!(tree(&inbox), ["processed/orders.csv"]);
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 2);
    let (_, status, file_path, attempts) = job_of(&pool, "orders.csv").await;
    assert_eq!((status.as_str(), attempts), ("succeeded", 3));
    assert!(!file_path.contains("/failed/"), "{file_path}");
    // And once more: finished, not run again.
    retry().await.assert_code(1);
    assert_eq!(tree(&inbox), ["processed/orders.csv"]);
}

/// `cpi validate` on a folder holding `c.yaml` (a Connection) and
/// `p.yaml` with `project` as its text; the run (secrets not read).
fn validate_project(project: &str) -> Run {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("c.yaml"),
        "apiVersion: cpi/v1\nkind: Connection\nmetadata:\n  name: c\nspec:\n  database_url: postgresql://u@h/db\n",
    )
    .unwrap();
    std::fs::write(d.path().join("p.yaml"), project).unwrap();
    let mut cmd = Cpi::new(["validate", "--manifests", path(d.path())]).command();
    cmd.env_remove("CPI_INBOX_ROOTS");
    cmd.output().expect("run cpi").into()
}

const PROJECT_HEAD: &str =
    "apiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: p\nspec:\n  connection: c\n  config:\n    inbox: /tmp/in\n";

#[test]
fn regression_validate_resolves_the_primary_key_through_columns() {
    let r = validate_project(&format!(
        "{PROJECT_HEAD}    tables:\n      - file_pattern: \"*.csv\"\n        table: orders\n        columns:\n          Order ID: order_id\n        primary_key: Order ID\n        mode: upsert\n"
    ));
    let out = format!("{}{}", r.stdout, r.stderr);
    assert_ne!(r.code, 0, "{out}");
    assert!(out.contains("p.yaml:14"), "{out}");
    assert!(
        out.contains("\"Order ID\"") && out.contains("order_id"),
        "{out}"
    );
    // The same through the column names: valid.
    let ok = validate_project(&format!(
        "{PROJECT_HEAD}    tables:\n      - file_pattern: \"*.csv\"\n        table: orders\n        columns:\n          Order ID: order_id\n        primary_key: order_id\n        mode: upsert\n"
    ));
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
}

#[test]
fn regression_validate_reports_every_error_of_a_document_with_did_you_mean() {
    let r = validate_project(&format!(
        "{PROJECT_HEAD}    tables:\n      - table: orders\n        mode: upsret\n        primary_kye: id\n        encoding: latin2\n"
    ));
    let out = format!("{}{}", r.stdout, r.stderr);
    assert_ne!(r.code, 0, "{out}");
    assert!(out.contains("p.yaml:11"), "the mode typo: {out}");
    assert!(out.contains("did you mean `upsert`"), "{out}");
    assert!(out.contains("p.yaml:12"), "the primary_key typo: {out}");
    assert!(out.contains("did you mean `primary_key`"), "{out}");
    assert!(
        out.contains("p.yaml:13") && out.contains("`latin2`"),
        "{out}"
    );
}

#[tokio::test]
async fn regression_infer_honours_the_projects_value_options_and_says_why_text() {
    let env = Env::new(json!({
        "table": "t", "mode": "append", "create_table": "infer", "date_order": "DMY", "decimal_separator": ",", "thousands_separator": ".",
        "date_format": {"shipped": "%d %b %Y"}
    }))
    .await;
    let f = env.file(
        "t.csv",
        "ordered,amount,shipped,price\n31/12/2024,\"23.696,69\",05 Jan 2025,$1.50\n01/02/2024,\"7,5\",06 Feb 2025,$2.00\n"
            .as_bytes(),
    );
    let r = cpi_on(&env, &["infer", "--project", "p", path(&f)]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sql = r.stdout;
    assert!(sql.contains("\"ordered\" date"), "{sql}");
    assert!(sql.contains("\"amount\" numeric"), "{sql}");
    assert!(sql.contains("\"shipped\" date"), "{sql}");
    assert!(sql.contains("\"price\" text"), "{sql}");
    assert!(
        sql.contains("column \"price\": \"$1.50\" on line 2") && sql.contains("currency symbol"),
        "the fall back to text is told, with why: {sql}"
    );
    // What infer says, the import loads.
    let csv = std::fs::read(&f).unwrap();
    env.import("t2.csv", &csv).await;
    assert_eq!(
        env.rows("SELECT ordered::text || ' ' || amount::text || ' ' || shipped::text FROM t ORDER BY amount").await,
        vec!["2024-02-01 7.5 2025-02-06", "2024-12-31 23696.69 2025-01-05"]
    );
}

/// `$1,234.56` was refused (infer fell back to `text`) with no option to
/// read it: `currency_symbols` names the symbols, for infer and import.
#[tokio::test]
async fn regression_currency_symbols_are_read_off_numbers_when_named() {
    let env = Env::new(json!({
        "table": "t", "mode": "append", "create_table": "infer", "thousands_separator": ",",
        "currency_symbols": ["$", "€"]
    }))
    .await;
    let text = "item,price\nboots,\"$1,234.56\"\nrefund,-$2.00\nsocks,3.50 €\n";
    let f = env.file("t.csv", text.as_bytes());
    let r = cpi_on(&env, &["infer", "--project", "p", path(&f)]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("\"price\" numeric"), "{}", r.stdout);
    env.import("t2.csv", text.as_bytes()).await;
    assert_eq!(
        env.rows("SELECT item || ' ' || price::text FROM t ORDER BY price")
            .await,
        vec!["refund -2.00", "socks 3.50", "boots 1234.56"]
    );
    // A symbol that is not named is still refused, naming the value.
    let bad = env.file("bad.csv", b"item,price\ntea,\"\xc2\xa31.00\"\n");
    let r = cpi_on(&env, &["import", "--project", "p", path(&bad)]).await;
    r.assert_code(1);
    assert!(
        r.stdout.contains("\"£1.00\" is not a valid numeric"),
        "{}",
        r.stdout
    );
}

#[test]
fn regression_validate_has_output_json_with_every_problem() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("p.yaml"),
        format!("{PROJECT_HEAD}    tables:\n      - mode: upsret\n        primary_kye: id\n"),
    )
    .unwrap();
    let mut cmd = Cpi::new(["validate", "-o", "json", "--manifests", path(d.path())]).command();
    cmd.env_remove("CPI_INBOX_ROOTS");
    let r: Run = cmd.output().expect("run cpi").into();
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect(&r.stdout);
    assert_eq!(v["valid"], false);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{v}");
    assert_eq!(problems[0]["file"], "p.yaml");
    assert_eq!(problems[0]["line"], 10);
    assert_eq!(problems[1]["line"], 11);
}

/// After a table was dropped, its files could not be loaded again: the
/// ledger called each a duplicate, and no documented way existed short of
/// `DELETE FROM cpi.imported_files`.
#[tokio::test]
async fn regression_a_dropped_table_can_be_loaded_again_by_replay() {
    let env = appending_to_t().await;
    let good = import(&env, "good.csv", b"id,v\n1,a\n2,b\n", 0).await;
    let first: uuid::Uuid = sqlx::query_scalar("SELECT id FROM cpi_import_jobs")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    env.exec("DROP TABLE t").await;
    env.exec("CREATE TABLE t (id int, v text)").await;
    // Imported again: a duplicate, as the ledger says (and should).
    cpi_on(&env, &["import", "--project", "p", path(&good)])
        .await
        .assert_code(0)
        .assert_stdout("duplicate");
    assert_eq!(scalar_i64(&env.pool, "SELECT count(*) FROM t").await, 0);

    // A replay needs a reason, and only a finished job has one.
    cpi_on(&env, &["jobs", "replay", &first.to_string()])
        .await
        .assert_code(1)
        .assert_stderr("--reason");
    let short = &first.simple().to_string()[..8];
    let r = cpi_on(
        &env,
        &["jobs", "replay", short, "--reason", "table rebuilt"],
    )
    .await;
    r.assert_code(0)
        .assert_stdout(&format!("job {first} replayed as job"));
    assert_eq!(scalar_i64(&env.pool, "SELECT count(*) FROM t").await, 2);
    let (replay, status): (uuid::Uuid, String) =
        sqlx::query_as("SELECT id, status FROM cpi_import_jobs WHERE replay_of = $1")
            .bind(first)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(status, "succeeded");
    // The ledger names the replay; the first import's entry is superseded,
    // kept with when and by whom.
    let ledger: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT job_id FROM cpi.imported_files")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(ledger, vec![replay]);
    let (was, by): (uuid::Uuid, uuid::Uuid) =
        sqlx::query_as("SELECT job_id, superseded_by FROM cpi.superseded_files")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!((was, by), (first, replay));
    let payload: serde_json::Value = sqlx::query_scalar(
        "SELECT payload FROM cpi_events WHERE kind = 'job.replayed' AND job_id = $1",
    )
    .bind(replay)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(payload["reason"], "table rebuilt");
    assert_eq!(payload["replays"], first.to_string());
    assert!(
        payload["by"].as_str().unwrap().starts_with("cli:"),
        "{payload}"
    );

    // A failed job is retried, not replayed; nothing changes.
    import(&env, "bad.csv", b"id,v\nx,a\n", 1).await;
    let failed: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM cpi_import_jobs WHERE file_name = 'bad.csv'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    let jobs = scalar_i64(&env.pool, "SELECT count(*) FROM cpi_import_jobs").await;
    cpi_on(
        &env,
        &["jobs", "replay", &failed.to_string(), "--reason", "x"],
    )
    .await
    .assert_code(1)
    .assert_stderr("only a succeeded or duplicate job can be replayed");
    assert_eq!(
        scalar_i64(&env.pool, "SELECT count(*) FROM cpi_import_jobs").await,
        jobs
    );
}

/// A replay through the API takes the file from `processed/` back through
/// the inbox: loaded again by a daemon worker, in `processed/` once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_through_the_api_returns_a_processed_file_through_the_inbox_once() {
    let db = TestDb::new().await;
    let (s, pool, d) = daemon_on_p(&db).await;
    let inbox = s.inbox("p");
    std::fs::write(inbox.join("orders.csv"), FIXED).unwrap();
    finished(&pool, "orders.csv", "succeeded").await;
    exists(&inbox.join("processed/orders.csv"), Duration::from_secs(20))
        .await
        .unwrap();
    let (id, ..) = job_of(&pool, "orders.csv").await;
    crate::support::db::exec(&pool, "DELETE FROM events").await;

    let (code, body) = d.post(&format!("/jobs/{id}/replay"), json!({})).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.to_string().contains("reason"), "{body}");
    let (code, body) = d
        .post(
            &format!("/jobs/{id}/replay?reason=rows%20deleted"),
            json!({}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["replay_of"], id.to_string());
    assert_eq!(body["status"], "queued");
    wait_i64(
        &pool,
        20,
        "the replay",
        &format!("SELECT count(*) FROM cpi_import_jobs WHERE replay_of = '{id}' AND status = 'succeeded'"),
        1,
    )
    .await
    .unwrap();
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 2);
    until_tree(&inbox, &["processed/orders.csv"]).await;
    // The first job stands as it was.
    assert_eq!(job_of_id(&pool, id).await, "succeeded");
    d.stop().await;
}

/// Waits until the inbox holds exactly `want`.
async fn until_tree(inbox: &Path, want: &[&str]) {
    for _ in 0..200 {
        if tree(inbox) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tree(inbox), want);
}

async fn job_of_id(pool: &sqlx::PgPool, id: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM cpi_import_jobs WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Pausing a project holds its files in the queue (none is claimed, none
/// lost) until it is resumed; who and why are recorded both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_project_keeps_its_files_queued_until_it_is_resumed() {
    let db = TestDb::new().await;
    let (s, pool, d) = daemon_on_p(&db).await;
    let inbox = s.inbox("p");
    let (code, body) = d
        .post("/projects/p/pause?reason=maintenance", json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        json!({"project": "p", "paused": true, "changed": true})
    );
    let (code, body) = d.post("/projects/p/pause", json!({})).await;
    assert_eq!(
        (code, body["changed"].clone()),
        (200, json!(false)),
        "{body}"
    );
    let (code, body) = d.post("/projects/nope/pause", json!({})).await;
    assert_eq!(code, 404, "{body}");

    std::fs::write(inbox.join("orders.csv"), FIXED).unwrap();
    wait_i64(
        &pool,
        20,
        "orders.csv queued",
        "SELECT count(*) FROM cpi_import_jobs WHERE file_name = 'orders.csv' AND status = 'queued'",
        1,
    )
    .await
    .unwrap();
    // Several rescans and claims later: still waiting, nothing loaded.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(job_of(&pool, "orders.csv").await.1, "queued");
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 0);
    assert_eq!(tree(&inbox), ["orders.csv"]);
    let metrics = reqwest::get(format!("http://{}/metrics", d.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("cpi_project_paused{project=\"p\"} 1"),
        "{metrics}"
    );
    let listed = Cpi::new(["projects", "list"]).db(&db).run();
    listed.assert_code(0);
    let row = listed.stdout.lines().find(|l| l.starts_with("p ")).unwrap();
    assert!(row.contains("by api"), "{}", listed.stdout);

    let resumed = Cpi::new(["projects", "resume", "p", "--reason", "done"])
        .db(&db)
        .run();
    resumed.assert_code(0).assert_stdout("project p resumed");
    finished(&pool, "orders.csv", "succeeded").await;
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 2);
    let events: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT kind, payload FROM cpi_events WHERE kind LIKE 'project.%' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].0, "project.paused");
    assert_eq!(events[0].1, json!({"by": "api", "reason": "maintenance"}));
    assert_eq!(events[1].0, "project.resumed");
    assert_eq!(events[1].1["reason"], "done");
    assert!(events[1].1["by"].as_str().unwrap().starts_with("cli:"));
    d.stop().await;
}

/// Cancelling: a queued job fails at once and a running import rolls back;
/// either way the file goes to `failed/` with a report saying who
/// cancelled it and why, and it is not queued again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_fails_rolls_back_and_sets_its_file_aside() {
    let db = TestDb::new().await;
    let (s, pool, d) = daemon_on_p(&db).await;
    let inbox = s.inbox("p");

    // Queued (the project paused, so it waits): failed now, through the CLI.
    let (code, _) = d.post("/projects/p/pause", json!({})).await;
    assert_eq!(code, 200);
    std::fs::write(inbox.join("orders.csv"), FIXED).unwrap();
    wait_i64(
        &pool,
        20,
        "orders.csv queued",
        "SELECT count(*) FROM cpi_import_jobs WHERE status = 'queued'",
        1,
    )
    .await
    .unwrap();
    let (id, ..) = job_of(&pool, "orders.csv").await;
    let r = Cpi::new([
        "jobs",
        "cancel",
        &id.to_string()[..8],
        "--reason",
        "wrong feed",
    ])
    .db(&db)
    .run();
    r.assert_code(0)
        .assert_stdout("is failed: cancelled by cli:");
    assert!(r.stdout.contains(": wrong feed"), "{}", r.stdout);
    assert_eq!(
        tree(&inbox),
        ["failed/orders.csv", "failed/orders.csv.error.json"]
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(inbox.join("failed/orders.csv.error.json")).unwrap())
            .unwrap();
    assert!(
        report["error"].as_str().unwrap().contains("wrong feed"),
        "{report}"
    );
    let (code, _) = d.post("/projects/p/resume", json!({})).await;
    assert_eq!(code, 200);

    // Running: its worker stops at the next renewal; the rows roll back.
    std::fs::rename(s.big_tmp(2_000_000), inbox.join("big.csv")).unwrap();
    wait_i64(
        &pool,
        30,
        "big.csv running",
        "SELECT count(*) FROM cpi_import_jobs WHERE file_name = 'big.csv' AND status = 'running'",
        1,
    )
    .await
    .unwrap();
    let (big, ..) = job_of(&pool, "big.csv").await;
    let (code, body) = d
        .post(&format!("/jobs/{big}/cancel?reason=too%20big"), json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "running");
    finished(&pool, "big.csv", "failed").await;
    let error: String = sqlx::query_scalar("SELECT error FROM cpi_import_jobs WHERE id = $1")
        .bind(big)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(error, "cancelled by api: too big");
    reported(&inbox, "big.csv").await;
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 0);
    // Cancelled is final: a finished job is not cancelled again, and
    // nothing queues the files again.
    let (code, body) = d.post(&format!("/jobs/{big}/cancel"), json!({})).await;
    assert_eq!(code, 409, "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM cpi_import_jobs").await,
        2
    );
    let events = scalar_i64(
        &pool,
        "SELECT count(*) FROM cpi_events WHERE kind = 'job.cancelled'",
    )
    .await;
    assert_eq!(events, 2);
    // A cancel is the operator's act, told by `job.cancelled` alone: no
    // `import.failed` beside it for notifications to send as well.
    let failed = scalar_i64(
        &pool,
        "SELECT count(*) FROM cpi_events WHERE kind = 'import.failed'",
    )
    .await;
    assert_eq!(failed, 0, "a cancelled job is not an import.failed event");
    d.stop().await;
}

/// A bulk retry takes the failed jobs a filter names (project, table,
/// time), retries each as one retry does, and lists the ones it could not
/// retry without stopping at them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_are_retried_in_bulk_by_filter() {
    let db = TestDb::new().await;
    let (s, pool, d, id) = failed_in_the_daemon(&db).await;
    let inbox = s.inbox("p");
    // A second failure whose file is then removed: it cannot be retried.
    fails(&pool, &inbox, "gone.csv", "id,tag,n\n3,c,x\n").await;
    std::fs::remove_file(inbox.join("failed/gone.csv")).unwrap();
    std::fs::write(inbox.join("failed/orders.csv"), FIXED).unwrap();

    // Filters that name nothing retry nothing.
    for args in [
        &["--project", "other"][..],
        &["--table", "nowhere"],
        &["--until", "1h"],
    ] {
        let r = Cpi::new([&["jobs", "retry", "--failed", "-o", "json"][..], args].concat())
            .db(&db)
            .run();
        r.assert_code(0);
        assert_eq!(r.stdout.trim(), "[]", "{args:?}");
    }
    let (code, body) = d
        .post(
            "/jobs/retry?project=p&table=events&reason=bulk%20fix",
            json!({}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let retried: Vec<&str> = body["retried"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(retried, [id.to_string().as_str()], "{body}");
    assert_eq!(body["refused"].as_array().unwrap().len(), 1, "{body}");
    assert!(
        body["refused"][0]["error"]
            .as_str()
            .unwrap()
            .contains("no longer exists"),
        "{body}"
    );
    finished(&pool, "orders.csv", "succeeded").await;
    until_tree(
        &inbox,
        &["failed/gone.csv.error.json", "processed/orders.csv"],
    )
    .await;
    let reasons: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT payload->'reason' FROM cpi_events WHERE kind = 'job.retried'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(reasons, [json!("bulk fix")]);
    d.stop().await;
}
