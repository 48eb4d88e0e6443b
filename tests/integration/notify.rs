//! Notifications (issue #25): the Provider, Alert and Receiver kinds
//! reconciled into `cpi_objects`, shown by `cpi diff`, pruned when removed.

use sqlx::Row;

use crate::support::fs::manifest;
use crate::support::{write, Cpi, TestDb};

const URL_SECRET: &str = "planted-url-secret-7731";
const KEY_SECRET: &str = "planted-hmac-secret-4410";

fn folder(dir: &std::path::Path) {
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
        .assert_stdout("Plan: 3 to create, 0 to update, 0 to delete.");
    diff.assert_hides("diff", &[URL_SECRET, KEY_SECRET]);
    cpi(&["apply"]).assert_code(0);
    let pool = db.pool().await;
    let rows = sqlx::query("SELECT kind, name, spec::text AS spec FROM cpi_objects ORDER BY kind")
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
            ("Provider".into(), "ops".into()),
            ("Receiver".into(), "gh".into())
        ]
    );
    for r in &rows {
        let spec: String = r.get("spec");
        assert!(
            !spec.contains(URL_SECRET) && !spec.contains(KEY_SECRET),
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
    assert_eq!(n, 2, "the receiver is pruned");
}
