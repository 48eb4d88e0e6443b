//! Manifests → plan → apply against the real PostgreSQL (DESIGN §4).

use std::path::Path;

use sqlx::Row;

use crate::support::fs::manifest;
use crate::support::manifests::connection;
use crate::support::{cpi, write, Cpi, Run, TestDb};

/// A project described as "NAME exports", keyed on `id` by default.
fn project(name: &str, connection: &str, inbox: &str) -> String {
    manifest(
        "Project",
        name,
        &format!("description: {name} exports\nconnection: {connection}\nconfig:\n  inbox: {inbox}\n  defaults:\n    primary_key: id\n"),
    )
}

/// A manifests folder with one connection (`abc`) and one project (`p1`).
fn base(dir: &Path) {
    write(
        dir,
        "connections/abc.yaml",
        &connection(
            "abc",
            "ABC prod",
            "postgresql://importer@db.internal:5432/abc",
            "abc.pass",
        ),
    );
    write(dir, "abc.pass", "first-password\n");
    write(dir, "projects/p1.yaml", &project("p1", "abc", "/srv/in/p1"));
}

#[tokio::test]
async fn apply_creates_rows_and_then_diff_is_clean() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());

    let d = Cpi::new(["diff"]).db(&db).manifests(dir.path()).run();
    assert_eq!(d.code, 2, "{}", d.all());
    assert!(
        d.stdout
            .contains("Plan: 2 to create, 0 to update, 0 to delete."),
        "{}",
        d.stdout
    );

    let a = Cpi::new(["apply"]).db(&db).manifests(dir.path()).run();
    assert_eq!(a.code, 0, "{}", a.all());
    let d = Cpi::new(["diff"]).db(&db).manifests(dir.path()).run();
    assert_eq!(d.code, 0, "{}", d.all());
    assert!(d
        .stdout
        .contains("Plan: 0 to create, 0 to update, 0 to delete."));

    let mut conn = db.connect().await;
    let row = sqlx::query(
        "SELECT c.database_url, c.managed_by, c.source, p.config, p.source AS psource
           FROM cpi_projects p JOIN cpi_connections c ON c.id = p.connection_id WHERE p.name = 'p1'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        row.get::<String, _>("database_url"),
        "postgresql://importer:first-password@db.internal:5432/abc"
    );
    assert_eq!(row.get::<String, _>("managed_by"), "cpi");
    assert_eq!(row.get::<String, _>("source"), "connections/abc.yaml");
    assert_eq!(row.get::<String, _>("psource"), "projects/p1.yaml");
    let config: serde_json::Value = row.get("config");
    assert_eq!(config["name"], "p1");
    assert_eq!(config["inbox"], "/srv/in/p1");
    let (status, created): (String, i32) = sqlx::query_as(
        "SELECT status, created FROM cpi_reconcile_runs ORDER BY started_at DESC LIMIT 1",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((status.as_str(), created), ("succeeded", 2));
}

#[tokio::test]
async fn each_change_shows_exactly_that_field() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    assert_eq!(
        Cpi::new(["apply"]).db(&db).manifests(dir.path()).run().code,
        0
    );

    // Description.
    write(
        dir.path(),
        "connections/abc.yaml",
        &connection(
            "abc",
            "ABC production",
            "postgresql://importer@db.internal:5432/abc",
            "abc.pass",
        ),
    );
    let d = Cpi::new(["diff"]).db(&db).manifests(dir.path()).run();
    assert_eq!(d.code, 2, "{}", d.all());
    assert!(
        d.stdout.contains("~ Connection abc (update: description)"),
        "{}",
        d.stdout
    );
    assert!(
        d.stdout
            .contains("-description: ABC prod\n+description: ABC production\n"),
        "{}",
        d.stdout
    );
    assert!(d
        .stdout
        .contains("Plan: 0 to create, 1 to update, 0 to delete."));
    assert_eq!(
        Cpi::new(["apply"]).db(&db).manifests(dir.path()).run().code,
        0
    );

    // URL (visible part).
    write(
        dir.path(),
        "connections/abc.yaml",
        &connection(
            "abc",
            "ABC production",
            "postgresql://importer@db2.internal:5432/abc",
            "abc.pass",
        ),
    );
    let d = Cpi::new(["diff"]).db(&db).manifests(dir.path()).run();
    assert_eq!(d.code, 2);
    assert!(
        d.stdout
            .contains("~ Connection abc (update: database_url)\n"),
        "{}",
        d.stdout
    );
    assert!(
        d.stdout
            .contains("+database_url: postgresql://importer:*****@db2.internal:5432/abc\n"),
        "{}",
        d.stdout
    );
    assert_eq!(
        Cpi::new(["apply"]).db(&db).manifests(dir.path()).run().code,
        0
    );

    // Password only.
    write(dir.path(), "abc.pass", "second-password");
    let d = Cpi::new(["diff"]).db(&db).manifests(dir.path()).run();
    assert_eq!(d.code, 2);
    assert!(
        d.stdout
            .contains("~ Connection abc (update: database_url) (secret changed)"),
        "{}",
        d.stdout
    );
    assert!(!d.all().contains("second-password") && !d.all().contains("first-password"));
    assert_eq!(
        Cpi::new(["apply"]).db(&db).manifests(dir.path()).run().code,
        0
    );
    let mut conn = db.connect().await;
    let (url,): (String,) =
        sqlx::query_as("SELECT database_url FROM cpi_connections WHERE name = 'abc'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(url.contains(":second-password@"));

    // Project config.
    write(
        dir.path(),
        "projects/p1.yaml",
        &project("p1", "abc", "/srv/in/p1-new"),
    );
    let d = Cpi::new(["diff"]).db(&db).manifests(dir.path()).run();
    assert_eq!(d.code, 2);
    assert!(
        d.stdout.contains("~ Project p1 (update: config)"),
        "{}",
        d.stdout
    );
    assert!(
        d.stdout
            .contains("-  inbox: /srv/in/p1\n+  inbox: /srv/in/p1-new\n"),
        "{}",
        d.stdout
    );
    assert_eq!(
        Cpi::new(["apply"]).db(&db).manifests(dir.path()).run().code,
        0
    );
    assert_eq!(
        Cpi::new(["diff"]).db(&db).manifests(dir.path()).run().code,
        0
    );
}

#[tokio::test]
async fn removed_manifest_is_deleted_within_the_guard() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    for i in 2..=4 {
        write(
            dir.path(),
            &format!("projects/p{i}.yaml"),
            &project(&format!("p{i}"), "abc", "/in"),
        );
    }
    assert_eq!(
        Cpi::new(["apply"]).db(&db).manifests(dir.path()).run().code,
        0
    );

    std::fs::remove_file(dir.path().join("projects/p4.yaml")).unwrap();
    let d = Cpi::new(["diff"]).db(&db).manifests(dir.path()).run();
    assert_eq!(d.code, 2);
    assert!(d.stdout.contains("- Project p4 (delete)"), "{}", d.stdout);
    assert_eq!(
        Cpi::new(["apply"]).db(&db).manifests(dir.path()).run().code,
        0
    );

    // More than --max-delete: refused, nothing changes, recorded as refused.
    std::fs::remove_file(dir.path().join("projects/p3.yaml")).unwrap();
    std::fs::remove_file(dir.path().join("projects/p2.yaml")).unwrap();
    let a = Cpi::new(["apply", "--max-delete", "1"])
        .db(&db)
        .manifests(dir.path())
        .run();
    assert_eq!(a.code, 1, "{}", a.all());
    assert!(
        a.stderr
            .contains("refusing to delete 2 objects (more than --max-delete 1)"),
        "{}",
        a.stderr
    );
    let mut conn = db.connect().await;
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM cpi_projects")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 3);
    let (refused,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM cpi_reconcile_runs WHERE status = 'refused'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(refused, 1);

    // An empty folder (say, an unmounted volume) never deletes everything by accident.
    let empty = tempfile::tempdir().unwrap();
    let a = Cpi::new(["apply"]).db(&db).manifests(empty.path()).run();
    assert_eq!(a.code, 1);
    assert!(
        a.stderr.contains("refusing to delete every managed object"),
        "{}",
        a.stderr
    );
    let a = Cpi::new(["apply", "--allow-delete"])
        .db(&db)
        .manifests(empty.path())
        .run();
    assert_eq!(a.code, 0, "{}", a.all());
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM cpi_projects")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn unmanaged_row_conflicts_until_adopted() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    assert_eq!(
        Cpi::new(["migrate"])
            .db(&db)
            .manifests(dir.path())
            .run()
            .code,
        0
    );
    let mut conn = db.connect().await;
    sqlx::query("INSERT INTO cpi_connections (name, database_url) VALUES ('abc', 'postgresql://legacy@old/abc')")
        .execute(&mut conn)
        .await
        .unwrap();

    for cmd in ["diff", "apply"] {
        let r = Cpi::new([cmd]).db(&db).manifests(dir.path()).run();
        assert_eq!(r.code, 1, "{cmd}: {}", r.all());
        assert!(
            r.all().contains(
                "Connection \"abc\" exists and is not managed by cpi: rerun with --adopt"
            ),
            "{}",
            r.all()
        );
    }
    let (owner,): (Option<String>,) =
        sqlx::query_as("SELECT managed_by FROM cpi_connections WHERE name = 'abc'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(owner, None, "a refused apply changes nothing");

    let a = Cpi::new(["apply", "--adopt"])
        .db(&db)
        .manifests(dir.path())
        .run();
    assert_eq!(a.code, 0, "{}", a.all());
    assert!(a.stdout.contains("[adopt]"), "{}", a.stdout);
    let (owner, url): (Option<String>, String) =
        sqlx::query_as("SELECT managed_by, database_url FROM cpi_connections WHERE name = 'abc'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(owner.as_deref(), Some("cpi"));
    assert!(url.contains("db.internal"));
    assert_eq!(
        Cpi::new(["diff"]).db(&db).manifests(dir.path()).run().code,
        0
    );
}

#[tokio::test]
async fn deleting_a_connection_row_keeps_its_projects() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    assert_eq!(
        Cpi::new(["apply"]).db(&db).manifests(dir.path()).run().code,
        0
    );
    let mut conn = db.connect().await;
    sqlx::query("DELETE FROM cpi_connections WHERE name = 'abc'")
        .execute(&mut conn)
        .await
        .unwrap();
    let (connection_id,): (Option<uuid::Uuid>,) =
        sqlx::query_as("SELECT connection_id FROM cpi_projects WHERE name = 'p1'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(connection_id, None, "ON DELETE SET NULL");

    // The next reconcile puts both back together.
    let d = Cpi::new(["diff"]).db(&db).manifests(dir.path()).run();
    assert_eq!(d.code, 2);
    assert!(
        d.stdout.contains("+ Connection abc (create)"),
        "{}",
        d.stdout
    );
    assert!(
        d.stdout
            .contains("~ Project p1 (update: connection) [drift: changed outside cpi]"),
        "{}",
        d.stdout
    );
    assert_eq!(
        Cpi::new(["apply"]).db(&db).manifests(dir.path()).run().code,
        0
    );
    let (linked,): (bool,) = sqlx::query_as(
        "SELECT p.connection_id = c.id FROM cpi_projects p, cpi_connections c WHERE p.name = 'p1' AND c.name = 'abc'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(linked);
}

#[tokio::test]
async fn edits_behind_cpis_back_are_reported_as_drift_and_set_back() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    assert_eq!(
        Cpi::new(["apply"]).db(&db).manifests(dir.path()).run().code,
        0
    );
    let mut conn = db.connect().await;
    sqlx::query("UPDATE cpi_projects SET description = 'hand edit' WHERE name = 'p1'")
        .execute(&mut conn)
        .await
        .unwrap();
    let d = Cpi::new(["diff"]).db(&db).manifests(dir.path()).run();
    assert_eq!(d.code, 2);
    assert!(
        d.stdout
            .contains("~ Project p1 (update: description) [drift: changed outside cpi]"),
        "{}",
        d.stdout
    );
    assert!(d.stdout.contains("(1 drifted from the manifests)"));
    assert_eq!(
        Cpi::new(["apply"]).db(&db).manifests(dir.path()).run().code,
        0
    );
    let (desc,): (String,) =
        sqlx::query_as("SELECT description FROM cpi_projects WHERE name = 'p1'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(desc, "p1 exports");
    let (drifted,): (i32,) =
        sqlx::query_as("SELECT drifted FROM cpi_reconcile_runs ORDER BY started_at DESC LIMIT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(drifted, 1);
}

#[tokio::test]
async fn concurrent_applies_are_serialized() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    for i in 0..50 {
        write(
            dir.path(),
            &format!("projects/gen{i}.yaml"),
            &project(&format!("gen{i}"), "abc", "/in"),
        );
    }
    assert_eq!(
        Cpi::new(["migrate"])
            .db(&db)
            .manifests(dir.path())
            .run()
            .code,
        0
    );
    let spawn = || {
        Cpi::new(["apply"])
            .db(&db)
            .manifests(dir.path())
            .command()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = (0..3).map(|_| spawn()).collect();
    for c in children {
        let r: Run = c.wait_with_output().unwrap().into();
        assert_eq!(r.code, 0, "{}", r.all());
    }
    let mut conn = db.connect().await;
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM cpi_projects")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 51);
    // Exactly one run created everything; the others, serialized behind it,
    // found nothing to do: one no-op row, extended by the second.
    let created: Vec<(i32,)> = sqlx::query_as(
        "SELECT created FROM cpi_reconcile_runs WHERE status = 'succeeded' ORDER BY created",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(created, vec![(0,), (52,)]);
    assert_eq!(
        Cpi::new(["diff"]).db(&db).manifests(dir.path()).run().code,
        0
    );
}

#[tokio::test]
async fn two_owners_never_touch_each_others_rows() {
    let db = TestDb::new().await;
    let a = tempfile::tempdir().unwrap();
    base(a.path());
    let b = tempfile::tempdir().unwrap();
    write(
        b.path(),
        "c.yaml",
        &connection("xyz", "XYZ", "postgresql://u@h/xyz", "x.pass"),
    );
    write(b.path(), "x.pass", "pw");
    assert_eq!(
        Cpi::new(["apply", "--owner", "team-a"])
            .db(&db)
            .manifests(a.path())
            .run()
            .code,
        0
    );
    assert_eq!(
        Cpi::new(["apply", "--owner", "team-b"])
            .db(&db)
            .manifests(b.path())
            .run()
            .code,
        0
    );
    // Team B's empty folder deletes only team B's rows.
    let empty = tempfile::tempdir().unwrap();
    let r = Cpi::new(["apply", "--owner", "team-b", "--allow-delete"])
        .db(&db)
        .manifests(empty.path())
        .run();
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("Plan: 0 to create, 0 to update, 1 to delete."),
        "{}",
        r.stdout
    );
    assert_eq!(
        Cpi::new(["diff", "--owner", "team-a"])
            .db(&db)
            .manifests(a.path())
            .run()
            .code,
        0
    );
    // Declaring team A's connection as team B is a conflict.
    let r = Cpi::new(["diff", "--owner", "team-b"])
        .db(&db)
        .manifests(a.path())
        .run();
    assert_eq!(r.code, 1);
    assert!(
        r.all().contains("is managed by owner \"team-a\""),
        "{}",
        r.all()
    );
}

#[test]
fn diff_against_another_folder_needs_no_database_nor_secrets() {
    let base_dir = tempfile::tempdir().unwrap();
    let head = tempfile::tempdir().unwrap();
    for d in [base_dir.path(), head.path()] {
        base(d);
        std::fs::remove_file(d.join("abc.pass")).unwrap();
    }
    let r = cpi(&[
        "diff",
        "--manifests",
        head.path().to_str().unwrap(),
        "--against",
        base_dir.path().to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("secret file"),
        "missing secrets are warned about: {}",
        r.stderr
    );

    write(
        head.path(),
        "projects/p2.yaml",
        &project("p2", "abc", "/in/2"),
    );
    write(
        head.path(),
        "projects/p1.yaml",
        &project("p1", "abc", "/in/other"),
    );
    let r = cpi(&[
        "diff",
        "--manifests",
        head.path().to_str().unwrap(),
        "--against",
        base_dir.path().to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 2, "{}", r.all());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["summary"]["create"], 1);
    assert_eq!(v["summary"]["update"], 1);
    assert_eq!(v["changes"][0]["fields"], serde_json::json!(["config"]));
}

#[test]
fn broken_manifest_set_changes_nothing_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    base(dir.path());
    write(dir.path(), "projects/bad.yaml", "apiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: bad\nspec:\n  connection: abc\n  config:\n    inbox: /x\n    defaults:\n      mode: upsrt\n");
    let r = cpi(&["validate", "--manifests", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("projects/bad.yaml:10:"), "{}", r.stderr);
    assert!(r.stderr.contains("unknown variant `upsrt`"), "{}", r.stderr);
    let r = cpi(&["validate", "--manifests", "examples/manifests"]);
    assert_eq!(r.code, 0, "{}", r.all());
}
