//! Notifications (issue #25): the Provider, Alert and Receiver kinds
//! reconciled into `cpi_objects`, shown by `cpi diff`, pruned when removed.

use sqlx::Row;

use crate::support::fs::manifest;
use crate::support::{write, Cpi, TestDb};

pub const URL_SECRET: &str = "planted-url-secret-7731";
pub const KEY_SECRET: &str = "planted-hmac-secret-4410";
pub const SMTP_SECRET: &str = "planted-smtp-secret-2207";

/// A Provider of each type (secrets in files beside), an Alert, a Receiver.
pub fn folder(dir: &std::path::Path) {
    write(
        dir,
        "notify/ops.yaml",
        &manifest(
            "Provider",
            "ops",
            "type: webhook\nurl_file: ops.url\nsecret_file: ops.key\n",
        ),
    );
    write(
        dir,
        "notify/failures.yaml",
        &manifest(
            "Alert",
            "failures",
            "provider: ops\nprojects: ['sales-*']\nevents: [import.failed, check.failed]\n",
        ),
    );
    write(
        dir,
        "notify/gh.yaml",
        &manifest(
            "Receiver",
            "gh",
            "type: github\nsecret_file: ops.key\ntriggers: [reconcile]\n",
        ),
    );
    write(
        dir,
        "notify/mail.yaml",
        &manifest(
            "Provider",
            "mail",
            "type: email\nsmtp:\n  host: mx.example.com\n  from: cpi@example.com\n  to: [ops@example.com]\n  username_file: smtp.user\n  password_file: smtp.pass\n",
        ),
    );
    write(dir, "smtp.user", "cpi\n");
    write(dir, "smtp.pass", &format!("{SMTP_SECRET}\n"));
    write(
        dir,
        "ops.url",
        &format!("https://hooks.example.com/{URL_SECRET}\n"),
    );
    write(dir, "ops.key", &format!("{KEY_SECRET}\n"));
}

#[tokio::test]
async fn notification_kinds_are_planned_applied_and_pruned_without_their_secrets() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    folder(dir.path());
    let cpi = |args: &[&str]| Cpi::new(args).db(&db).manifests(dir.path()).run();
    let diff = cpi(&["diff"]);
    diff.assert_code(2)
        .assert_stdout("+ Provider ops (create)")
        .assert_stdout("+ Alert failures (create)")
        .assert_stdout("+ Receiver gh (create)")
        .assert_stdout("+ Provider mail (create)")
        .assert_stdout("Plan: 4 to create, 0 to update, 0 to delete.");
    diff.assert_hides("diff", &[URL_SECRET, KEY_SECRET, SMTP_SECRET]);
    cpi(&["apply"]).assert_code(0);
    let pool = db.pool().await;
    let rows =
        sqlx::query("SELECT kind, name, spec::text AS spec FROM cpi_objects ORDER BY kind, name")
            .fetch_all(&pool)
            .await
            .unwrap();
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get("kind"), r.get("name")))
        .collect();
    assert_eq!(
        got,
        [
            ("Alert".to_string(), "failures".to_string()),
            ("Provider".into(), "mail".into()),
            ("Provider".into(), "ops".into()),
            ("Receiver".into(), "gh".into())
        ]
    );
    for r in &rows {
        let spec: String = r.get("spec");
        assert!(
            !spec.contains(URL_SECRET) && !spec.contains(KEY_SECRET) && !spec.contains(SMTP_SECRET),
            "{spec}"
        );
    }
    cpi(&["diff"]).assert_code(0);
    write(
        dir.path(),
        "notify/failures.yaml",
        &manifest(
            "Alert",
            "failures",
            "provider: ops\nprojects: ['sales-*']\nevents: [import.failed]\nmax_per_hour: 10\n",
        ),
    );
    std::fs::remove_file(dir.path().join("notify/gh.yaml")).unwrap();
    let diff = cpi(&["diff"]);
    diff.assert_code(2)
        .assert_stdout("~ Alert failures (update: spec)")
        .assert_stdout("+  max_per_hour: 10")
        .assert_stdout("- Receiver gh (delete)");
    cpi(&["apply"]).assert_code(0);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM cpi_objects")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 3, "the receiver is pruned");
    let runs: String = sqlx::query_scalar("SELECT string_agg(diff, '') FROM cpi_reconcile_runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    for planted in [URL_SECRET, KEY_SECRET, SMTP_SECRET] {
        assert!(
            !runs.contains(planted),
            "{planted} in the reconcile history"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_sends_through_the_alerts_provider_and_says_how_it_went() {
    let dir = tempfile::tempdir().unwrap();
    folder(dir.path());
    let r = crate::support::receiver::Recorder::start().await;
    write(dir.path(), "ops.url", &format!("{}\n", r.url(URL_SECRET)));
    // No database: the Alert and its Provider come from the manifests.
    let run = Cpi::new(["notify", "test", "failures"])
        .manifests(dir.path())
        .run_async()
        .await;
    run.assert_code(0)
        .assert_stdout("sent a test message for alert \"failures\"");
    let got = r.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["kind"], "notify.test");
    assert!(cpi::notify::sign::verify(
        KEY_SECRET.as_bytes(),
        &got[0].body,
        got[0].header("x-cpi-signature-256").as_deref()
    ));
    r.set_up(false);
    let run = Cpi::new(["notify", "test", "failures"])
        .manifests(dir.path())
        .run_async()
        .await;
    run.assert_code(1)
        .assert_output("the receiver answered HTTP 503");
    run.assert_hides("notify test", &[URL_SECRET, KEY_SECRET]);
    write(
        dir.path(),
        "ops.url",
        &format!("http://127.0.0.1:1/{URL_SECRET}\n"),
    );
    let run = Cpi::new(["notify", "test", "failures"])
        .manifests(dir.path())
        .run_async()
        .await;
    run.assert_code(1)
        .assert_output("cannot reach the receiver");
    run.assert_hides("notify test", &[URL_SECRET, KEY_SECRET, "127.0.0.1:1"]);
    Cpi::new(["notify", "test", "nope"])
        .manifests(dir.path())
        .run_async()
        .await
        .assert_code(1)
        .assert_output("no Alert \"nope\" in the manifests");
}
