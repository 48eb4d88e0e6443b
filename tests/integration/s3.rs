//! Object-storage inboxes (issue 15) end to end: the real `cpi` binary, the
//! real PostgreSQL and a real S3 server on loopback (moto_server).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::daemon::{csv_rows, events_table, Daemon};
use crate::support::db::scalar_i64;
use crate::support::fs::manifest;
use crate::support::manifests::connection_to;
use crate::support::s3::{self, Proxy, S3Server, PLANTED_SECRET, TEST_KEY_ID};
use crate::support::wait::{http_ok, wait_for, wait_i64};
use crate::support::{free_port, write, Cpi, TestDb};

const BUCKET: &str = "cpi-inbox";

/// Manifests for one project `p` whose inbox is `s3://cpi-inbox/in/` on
/// `endpoint`, appending into `events`.
fn s3_manifests(db: &TestDb, dir: &Path, endpoint: &str) -> std::path::PathBuf {
    let m = dir.join("manifests");
    write(
        &m,
        "connections/target.yaml",
        &connection_to("target", db, "the test database"),
    );
    write(&m, "target.pass", "pw-1\n");
    write(
        &m,
        "projects/p.yaml",
        &manifest(
            "Project",
            "p",
            &format!(
                "connection: target\nconfig:\n  inbox: s3://{BUCKET}/in/\n  {}\n  defaults: {{table: events, mode: append}}\n",
                s3::storage_yaml(endpoint)
            ),
        ),
    );
    m
}

/// A fresh database (and a pool on it) with an `events` table, an S3 server
/// with an empty bucket [`BUCKET`] and a client on it, and a temp folder.
async fn store() -> (
    TestDb,
    sqlx::PgPool,
    S3Server,
    aws_sdk_s3::Client,
    tempfile::TempDir,
) {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    events_table(&pool).await;
    let server = S3Server::start().await;
    let c = s3::client(&server.endpoint());
    s3::create_bucket(&c, BUCKET).await;
    (db, pool, server, c, tempfile::tempdir().unwrap())
}

/// The environment of a process that takes its keys from the environment
/// (the planted secret among them), and never asks instance metadata.
fn env_keys() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", TEST_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", PLANTED_SECRET),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        ),
    ]
}

/// The keys of `bucket` right under `prefix` and in its sub-"folders".
async fn wait_keys(c: &aws_sdk_s3::Client, prefix: &str, want: &[&str], secs: u64) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let got = wait_for(
        &format!("keys under {prefix}: {want:?}"),
        Duration::from_secs(secs),
        || {
            let (c, want) = (c.clone(), want.clone());
            async move {
                let k = s3::keys(&c, BUCKET, prefix).await;
                (k == want).then_some(k)
            }
        },
    )
    .await;
    if let Err(e) = got {
        panic!("{e}; now: {:?}", s3::keys(c, BUCKET, prefix).await);
    }
}

#[tokio::test]
async fn objects_are_imported_once_then_moved_and_a_reupload_is_a_duplicate() {
    let (db, pool, server, c, dir) = store().await;
    s3::put(&c, BUCKET, "in/a.csv", csv_rows(1, 10, "a")).await;
    s3::put(&c, BUCKET, "in/bad.csv", "id,tag,n\nnot-a-number,x,1\n").await;
    // Not in the inbox: a sub-"folder", and a name no pattern matches.
    s3::put(&c, BUCKET, "in/sub/deep.csv", csv_rows(100, 5, "deep")).await;
    s3::put(&c, BUCKET, "in/notes.txt", "hello").await;
    // A truncated .gz: its report gives the gzip reason (read again off the runtime).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, csv_rows(500, 2000, "gz").as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    s3::put(&c, BUCKET, "in/cut.csv.gz", gz[..gz.len() / 2].to_vec()).await;

    let m = s3_manifests(&db, dir.path(), &server.endpoint());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken-for-the-api\n").unwrap();
    let env = env_keys();
    let mut d = Daemon::start_env(
        &db,
        &m,
        &dir.path().join("log"),
        &[
            "--listen",
            &addr,
            "--api-token-file",
            token.to_str().unwrap(),
        ],
        &env,
    );

    wait_keys(&c, "in/processed/", &["in/processed/a.csv"], 60).await;
    wait_keys(
        &c,
        "in/failed/",
        &[
            "in/failed/bad.csv",
            "in/failed/bad.csv.error.json",
            "in/failed/cut.csv.gz",
            "in/failed/cut.csv.gz.error.json",
        ],
        60,
    )
    .await;
    let gz_report =
        String::from_utf8(s3::get(&c, BUCKET, "in/failed/cut.csv.gz.error.json").await).unwrap();
    assert!(gz_report.contains("not a valid gzip file"), "{gz_report}");
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 10);
    let report =
        String::from_utf8(s3::get(&c, BUCKET, "in/failed/bad.csv.error.json").await).unwrap();
    assert!(report.contains("\"file\": \"bad.csv\""), "{report}");
    assert!(report.contains("not-a-number"), "{report}");
    // Outside the inbox proper: untouched.
    assert_eq!(
        s3::keys(&c, BUCKET, "in/").await,
        vec![
            "in/failed/bad.csv",
            "in/failed/bad.csv.error.json",
            "in/failed/cut.csv.gz",
            "in/failed/cut.csv.gz.error.json",
            "in/notes.txt",
            "in/processed/a.csv",
            "in/sub/deep.csv",
        ]
    );

    // The same content under the same key again: a new object (new
    // upload), refused by the ledger as a duplicate, and moved aside too.
    s3::put(&c, BUCKET, "in/a.csv", csv_rows(1, 10, "a")).await;
    wait_i64(
        &pool,
        60,
        "the re-upload judged a duplicate",
        "SELECT count(*) FROM cpi_import_jobs WHERE file_name = 'a.csv' AND status = 'duplicate'",
        1,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    wait_for("the re-upload moved", Duration::from_secs(60), || {
        let c = c.clone();
        async move {
            let k = s3::keys(&c, BUCKET, "in/processed/").await;
            (k.len() == 2
                && !s3::keys(&c, BUCKET, "in/a.csv")
                    .await
                    .contains(&"in/a.csv".into()))
            .then_some(())
        }
    })
    .await
    .unwrap();
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 10);
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_import_jobs WHERE file_name = 'a.csv' AND status = 'succeeded'"
        )
        .await,
        1
    );
    // A job names its object by key and ETag.
    let path: (String,) = sqlx::query_as(
        "SELECT file_path FROM cpi_import_jobs WHERE file_name = 'a.csv' AND status = 'succeeded'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        path.0.starts_with(&format!("s3://{BUCKET}/in/a.csv#")),
        "{}",
        path.0
    );

    // The planted key is nowhere: log, API, metrics, console.
    let base = format!("http://{addr}");
    http_ok(&format!("{base}/readyz"), Duration::from_secs(20))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for url in ["/jobs", "/projects", "/metrics", "/", "/readyz"] {
        let body = crate::support::api::body_text(
            http.get(format!("{base}{url}"))
                .bearer_auth("t0ken-for-the-api"),
        )
        .await;
        assert!(
            !body.contains(PLANTED_SECRET),
            "{url} leaked the secret key"
        );
        // Object inboxes show like folder inboxes.
        let shown = match url {
            "/jobs" => "a.csv",
            "/projects" => "s3://cpi-inbox/in/",
            "/metrics" => "cpi_import_rows_total{outcome=\"inserted\"} 10",
            _ => "",
        };
        assert!(body.contains(shown), "{url}: {body}");
    }
    let log = d.log();
    assert!(
        !log.contains(PLANTED_SECRET),
        "the log leaked the secret key"
    );
    assert!(log.contains("object moved"), "{log}");
    d.stop(20);
}

#[tokio::test]
async fn credentials_come_from_a_shared_credentials_file_and_profile_and_never_show() {
    for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"] {
        assert!(
            std::env::var_os(k).is_none(),
            "{k} is set in the test's environment: the test would not show where keys come from"
        );
    }
    let (db, pool, server, c, dir) = store().await;
    s3::put(&c, BUCKET, "in/a.csv", csv_rows(1, 4, "a")).await;
    let m = s3_manifests(&db, dir.path(), &server.endpoint());
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        format!(
            "[default]\naws_access_key_id = AKIAWRONGPROFILE\naws_secret_access_key = not-this-one\n\n\
             [cpi-test]\naws_access_key_id = {TEST_KEY_ID}\naws_secret_access_key = {PLANTED_SECRET}\n"
        ),
    )
    .unwrap();
    let applied = Cpi::new(["apply"]).db(&db).manifests(&m).run_async().await;
    assert_eq!(applied.code, 0, "{}", applied.all());

    let import = |profile: &'static str| {
        let (db_url, creds) = (db.url(), creds.clone());
        Cpi::new([
            "import",
            "--project",
            "p",
            &format!("s3://{BUCKET}/in/a.csv"),
        ])
        .database_url(&db_url)
        .env("AWS_SHARED_CREDENTIALS_FILE", &creds)
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env("AWS_PROFILE", profile)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("CPI_LOG", "debug")
        .run_async()
    };
    // A profile with no keys: no credentials, a clear error, nothing loaded.
    let none = import("no-such-profile").await;
    assert_ne!(none.code, 0, "{}", none.all());
    assert!(
        none.all().contains(&format!("s3://{BUCKET}/in/a.csv")),
        "{}",
        none.all()
    );
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 0);

    let run = import("cpi-test").await;
    assert_eq!(run.code, 0, "{}", run.all());
    run.assert_hides("cpi import", &[PLANTED_SECRET]);
    none.assert_hides("cpi import", &[PLANTED_SECRET]);
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 4);
    // `cpi import` does not move what it imports (as with a local file).
    assert_eq!(s3::keys(&c, BUCKET, "in/").await, vec!["in/a.csv"]);
    // The job rows hold no key either.
    let n = scalar_i64(
        &pool,
        &format!("SELECT count(*) FROM cpi_import_jobs WHERE coalesce(error, '') LIKE '%{PLANTED_SECRET}%'"),
    )
    .await;
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_store_that_goes_away_mid_read_loses_nothing_and_the_object_loads_once() {
    let (db, pool, server, c, dir) = store().await;
    let proxy = Proxy::start(server.port).await;
    let rows = 60_000u64;
    let body = csv_rows(1, rows, "big");
    let size = body.len() as u64;
    s3::put(&c, BUCKET, "in/big.csv", body).await;

    let m = s3_manifests(&db, dir.path(), &proxy.endpoint());
    // ~1.6 MB/s: the read is under way for a second or so.
    proxy.throttle(16 * 1024);
    let env = env_keys();
    let mut d = Daemon::start_env(&db, &m, &dir.path().join("log"), &[], &env);
    wait_for("the read under way", Duration::from_secs(60), || {
        let n = proxy.down_bytes.load(Ordering::Relaxed);
        async move { (n > size / 3).then_some(()) }
    })
    .await
    .unwrap();
    assert!(
        proxy.down_bytes.load(Ordering::Relaxed) < size,
        "the read ended already"
    );
    proxy.cut();
    d.wait_log("the file stays in the inbox", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events").await,
        0,
        "a cut read must roll back"
    );
    assert_eq!(s3::keys(&c, BUCKET, "in/").await, vec!["in/big.csv"]);

    proxy.restore().await;
    wait_keys(&c, "in/", &["in/processed/big.csv"], 120).await;
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM events").await,
        rows as i64
    );
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_import_jobs WHERE status IN ('succeeded', 'duplicate')"
        )
        .await,
        1,
        "loaded once"
    );
    assert!(
        d.log().contains("reading from the object store"),
        "{}",
        d.log()
    );
    d.stop(20);
}

#[tokio::test]
async fn two_replicas_on_one_bucket_load_each_of_500_objects_once() {
    let (db, pool, server, c, dir) = store().await;
    let n = 500u64;
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..n {
        let c = c.clone();
        puts.spawn(async move {
            s3::put(&c, BUCKET, &format!("in/f{i:04}.csv"), csv_rows(i, 1, "r")).await
        });
    }
    while puts.join_next().await.is_some() {}
    // A listing tells an object moved after its import from a new upload
    // by its last write, in whole seconds: imports within the second of
    // the upload may be judged twice (the second time a duplicate).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m = s3_manifests(&db, dir.path(), &server.endpoint());
    let env = env_keys();
    let replica =
        |log: &str| Daemon::start_env(&db, &m, &dir.path().join(log), &["--workers", "2"], &env);
    let mut a = replica("a.log");
    let mut b = replica("b.log");
    wait_i64(
        &pool,
        300,
        "every row",
        "SELECT count(*) FROM events",
        n as i64,
    )
    .await
    .unwrap();
    wait_for("every object moved", Duration::from_secs(120), || {
        let c = c.clone();
        async move {
            let left = s3::keys(&c, BUCKET, "in/f").await.len();
            let moved = s3::keys(&c, BUCKET, "in/processed/").await.len();
            (left == 0 && moved == n as usize).then_some(())
        }
    })
    .await
    .unwrap();
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_import_jobs WHERE status = 'succeeded'"
        )
        .await,
        n as i64,
        "each object loaded once"
    );
    let twice: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT file_name, status, error, coalesce(worker, '') FROM cpi_import_jobs
          WHERE file_name IN (SELECT file_name FROM cpi_import_jobs GROUP BY 1 HAVING count(*) > 1)
          ORDER BY file_name, created_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    if !twice.is_empty() {
        let logs: String = [&a, &b]
            .iter()
            .flat_map(|d| {
                let log = d.log();
                let names: Vec<String> = twice.iter().map(|t| t.0.clone()).collect();
                log.lines()
                    .filter(|l| names.iter().any(|n| l.contains(n.as_str())))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join("\n");
        panic!("each object queued once: {twice:?}\n{logs}");
    }
    for d in [&mut a, &mut b] {
        d.stop(20);
    }
}

/// The operator's controls on an `s3://` inbox, as on a folder one: a
/// failed object fixed in `failed/` and retried comes back through the
/// inbox and ends once in `processed/` (its report gone); a processed one
/// replayed does the same; a queued one cancelled goes to `failed/` with a
/// report saying so, and is not imported after all. On main the retry and
/// the replay said the object was gone, and the cancel left it in the inbox.
#[tokio::test]
async fn regression_object_jobs_are_retried_replayed_and_cancelled_through_the_inbox() {
    let (db, pool, server, c, dir) = store().await;
    s3::put(&c, BUCKET, "in/a.csv", csv_rows(1, 10, "a")).await;
    s3::put(&c, BUCKET, "in/bad.csv", "id,tag,n\n20,x,not-a-number\n").await;
    let m = s3_manifests(&db, dir.path(), &server.endpoint());
    let addr = format!("127.0.0.1:{}", free_port());
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken-for-the-api\n").unwrap();
    let mut d = Daemon::start_env(
        &db,
        &m,
        &dir.path().join("log"),
        &[
            "--listen",
            &addr,
            "--api-token-file",
            token.to_str().unwrap(),
        ],
        &env_keys(),
    );
    wait_keys(&c, "in/processed/", &["in/processed/a.csv"], 60).await;
    wait_keys(
        &c,
        "in/failed/",
        &["in/failed/bad.csv", "in/failed/bad.csv.error.json"],
        60,
    )
    .await;
    let base = format!("http://{addr}");
    http_ok(&format!("{base}/readyz"), Duration::from_secs(20))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let job = |name: &'static str| {
        let pool = pool.clone();
        async move {
            let id: uuid::Uuid = sqlx::query_scalar(
                "SELECT id FROM cpi_import_jobs WHERE file_name = $1 ORDER BY created_at LIMIT 1",
            )
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap();
            id
        }
    };
    let post = |path: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let r = http
                .post(format!("{base}{path}"))
                .bearer_auth("t0ken-for-the-api")
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        }
    };

    // Retry: the object fixed where it was set aside.
    s3::put(
        &c,
        BUCKET,
        "in/failed/bad.csv",
        "id,tag,n\n20,x,1\n21,y,2\n",
    )
    .await;
    let bad = job("bad.csv").await;
    let (status, body) = post(format!("/jobs/{bad}/retry?reason=fixed")).await;
    assert_eq!(status, 200, "{body}");
    wait_keys(
        &c,
        "in/processed/",
        &["in/processed/a.csv", "in/processed/bad.csv"],
        60,
    )
    .await;
    assert!(s3::keys(&c, BUCKET, "in/failed/").await.is_empty());
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 12);
    assert_eq!(
        scalar_i64(
            &pool,
            &format!("SELECT count(*) FROM cpi_import_jobs WHERE id = '{bad}' AND status = 'succeeded' AND attempts = 2")
        )
        .await,
        1
    );

    // Replay: the table lost a.csv's rows; the processed object goes back
    // through the inbox, once, and loads them again.
    sqlx::query("DELETE FROM events WHERE id <= 10")
        .execute(&pool)
        .await
        .unwrap();
    let a = job("a.csv").await;
    let (status, body) = post(format!("/jobs/{a}/replay?reason=table%20reloaded")).await;
    assert_eq!(status, 200, "{body}");
    wait_i64(
        &pool,
        60,
        "the replay succeeded",
        &format!(
            "SELECT count(*) FROM cpi_import_jobs WHERE replay_of = '{a}' AND status = 'succeeded'"
        ),
        1,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 12);
    wait_keys(
        &c,
        "in/processed/",
        &["in/processed/a.csv", "in/processed/bad.csv"],
        60,
    )
    .await;

    // Cancel: a queued object (its project paused) goes to failed/.
    let (status, body) = post("/projects/p/pause?reason=holding".into()).await;
    assert_eq!(status, 200, "{body}");
    s3::put(&c, BUCKET, "in/c.csv", csv_rows(30, 3, "c")).await;
    wait_i64(
        &pool,
        60,
        "c.csv queued",
        "SELECT count(*) FROM cpi_import_jobs WHERE file_name = 'c.csv' AND status = 'queued'",
        1,
    )
    .await
    .unwrap();
    let cj = job("c.csv").await;
    let (status, body) = post(format!("/jobs/{cj}/cancel?reason=wrong%20file")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        s3::keys(&c, BUCKET, "in/failed/").await,
        ["in/failed/c.csv", "in/failed/c.csv.error.json"]
    );
    let report =
        String::from_utf8(s3::get(&c, BUCKET, "in/failed/c.csv.error.json").await).unwrap();
    assert!(report.contains("cancelled by api: wrong file"), "{report}");
    assert!(!s3::keys(&c, BUCKET, "in/")
        .await
        .contains(&"in/c.csv".to_string()));
    let (status, body) = post("/projects/p/resume".into()).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_import_jobs WHERE file_name = 'c.csv'"
        )
        .await,
        1,
        "the cancelled object was not queued again"
    );
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM events").await, 12);
    d.stop(20);
}
