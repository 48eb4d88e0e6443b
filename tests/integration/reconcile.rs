//! Manifests → plan → apply against the real PostgreSQL (DESIGN §4).

use std::path::Path;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::support::bin::diff_against;
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

/// A fresh database and a manifests folder holding [`base`].
struct Fixture {
    db: TestDb,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let db = TestDb::new().await;
        let dir = tempfile::tempdir().unwrap();
        base(dir.path());
        Fixture { db, dir }
    }

    /// `cpi ARGS` against this database and these manifests.
    fn cpi(&self, args: &[&str]) -> Run {
        self.cpi_in(args, self.dir.path())
    }

    /// `cpi ARGS` against this database and the manifests in `dir`.
    fn cpi_in(&self, args: &[&str], dir: &Path) -> Run {
        Cpi::new(args).db(&self.db).manifests(dir).run()
    }

    /// A fixture after `cpi CMD` (which must succeed) and then `sql` by
    /// hand, with the connection that ran it.
    async fn after(cmd: &str, sql: &'static str) -> (Fixture, PgConnection) {
        let f = Fixture::new().await;
        assert_eq!(f.cpi(&[cmd]).code, 0);
        let mut conn = f.db.connect().await;
        exec(&mut conn, sql).await;
        (f, conn)
    }

    /// `cpi diff`, which must show a plan (exit 2) holding each of `shows`
    /// on stdout, then `cpi apply`, which must succeed; returns the diff.
    fn diff_then_apply(&self, shows: &[&str]) -> Run {
        let d = self.cpi(&["diff"]);
        d.assert_code(2);
        for needle in shows {
            d.assert_stdout(needle);
        }
        assert_eq!(self.cpi(&["apply"]).code, 0);
        d
    }

    fn write(&self, rel: &str, text: &str) {
        write(self.dir.path(), rel, text);
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.dir.path().join(rel)).unwrap();
    }
}

/// The one row `sql` selects.
async fn one<T>(conn: &mut PgConnection, sql: &'static str) -> T
where
    T: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    sqlx::query_as(sql).fetch_one(conn).await.unwrap()
}

/// The one value `sql` selects.
async fn scalar<T>(conn: &mut PgConnection, sql: &'static str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

async fn exec(conn: &mut PgConnection, sql: &'static str) {
    sqlx::query(sql).execute(conn).await.unwrap();
}

/// Connection `abc` as [`base`] declares it, but with this description and URL.
fn abc(description: &str, url: &str) -> String {
    connection("abc", description, url, "abc.pass")
}

#[tokio::test]
async fn apply_creates_rows_and_then_diff_is_clean() {
    let f = Fixture::new().await;

    f.cpi(&["diff"])
        .assert_code(2)
        .assert_stdout("Plan: 2 to create, 0 to update, 0 to delete.");

    f.cpi(&["apply"]).assert_code(0);
    f.cpi(&["diff"])
        .assert_code(0)
        .assert_stdout("Plan: 0 to create, 0 to update, 0 to delete.");

    let mut conn = f.db.connect().await;
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
    let (status, created): (String, i32) = one(
        &mut conn,
        "SELECT status, created FROM cpi_reconcile_runs ORDER BY started_at DESC LIMIT 1",
    )
    .await;
    assert_eq!((status.as_str(), created), ("succeeded", 2));
}

#[tokio::test]
async fn each_change_shows_exactly_that_field() {
    let f = Fixture::new().await;
    assert_eq!(f.cpi(&["apply"]).code, 0);

    // Description.
    f.write(
        "connections/abc.yaml",
        &abc(
            "ABC production",
            "postgresql://importer@db.internal:5432/abc",
        ),
    );
    f.diff_then_apply(&[
        "~ Connection abc (update: description)",
        "-description: ABC prod\n+description: ABC production\n",
        "Plan: 0 to create, 1 to update, 0 to delete.",
    ]);

    // URL (visible part).
    f.write(
        "connections/abc.yaml",
        &abc(
            "ABC production",
            "postgresql://importer@db2.internal:5432/abc",
        ),
    );
    f.diff_then_apply(&[
        "~ Connection abc (update: database_url)\n",
        "+database_url: postgresql://importer:*****@db2.internal:5432/abc\n",
    ]);

    // Password only.
    f.write("abc.pass", "second-password");
    let d = f.diff_then_apply(&["~ Connection abc (update: database_url) (secret changed)"]);
    assert!(!d.all().contains("second-password") && !d.all().contains("first-password"));
    let mut conn = f.db.connect().await;
    let url: String = scalar(
        &mut conn,
        "SELECT database_url FROM cpi_connections WHERE name = 'abc'",
    )
    .await;
    assert!(url.contains(":second-password@"));

    // Project config.
    f.write("projects/p1.yaml", &project("p1", "abc", "/srv/in/p1-new"));
    f.diff_then_apply(&[
        "~ Project p1 (update: config)",
        "-  inbox: /srv/in/p1\n+  inbox: /srv/in/p1-new\n",
    ]);
    assert_eq!(f.cpi(&["diff"]).code, 0);
}

#[tokio::test]
async fn removed_manifest_is_deleted_within_the_guard() {
    let f = Fixture::new().await;
    for i in 2..=4 {
        f.write(
            &format!("projects/p{i}.yaml"),
            &project(&format!("p{i}"), "abc", "/in"),
        );
    }
    assert_eq!(f.cpi(&["apply"]).code, 0);

    f.remove("projects/p4.yaml");
    f.diff_then_apply(&["- Project p4 (delete)"]);

    // More than --max-delete: refused, nothing changes, recorded as refused.
    f.remove("projects/p3.yaml");
    f.remove("projects/p2.yaml");
    f.cpi(&["apply", "--max-delete", "1"])
        .assert_code(1)
        .assert_stderr("refusing to delete 2 objects (more than --max-delete 1)");
    let mut conn = f.db.connect().await;
    let n: i64 = scalar(&mut conn, "SELECT count(*) FROM cpi_projects").await;
    assert_eq!(n, 3);
    let refused: i64 = scalar(
        &mut conn,
        "SELECT count(*) FROM cpi_reconcile_runs WHERE status = 'refused'",
    )
    .await;
    assert_eq!(refused, 1);

    // An empty folder (say, an unmounted volume) never deletes everything by accident.
    let empty = tempfile::tempdir().unwrap();
    f.cpi_in(&["apply"], empty.path())
        .assert_code(1)
        .assert_stderr("refusing to delete every managed object");
    f.cpi_in(&["apply", "--allow-delete"], empty.path())
        .assert_code(0);
    let n: i64 = scalar(&mut conn, "SELECT count(*) FROM cpi_projects").await;
    assert_eq!(n, 0);
}

/// A connection `abc` made by hand, before cpi managed it.
const UNMANAGED_ABC: &str =
    "INSERT INTO cpi_connections (name, database_url) VALUES ('abc', 'postgresql://legacy@old/abc')";

#[tokio::test]
async fn unmanaged_row_conflicts_until_adopted() {
    let (f, mut conn) = Fixture::after("migrate", UNMANAGED_ABC).await;

    for cmd in ["diff", "apply"] {
        let r = f.cpi(&[cmd]);
        assert_eq!(r.code, 1, "{cmd}: {}", r.all());
        r.assert_output("Connection \"abc\" exists and is not managed by cpi: rerun with --adopt");
    }
    let owner: Option<String> = scalar(
        &mut conn,
        "SELECT managed_by FROM cpi_connections WHERE name = 'abc'",
    )
    .await;
    assert_eq!(owner, None, "a refused apply changes nothing");

    f.cpi(&["apply", "--adopt"])
        .assert_code(0)
        .assert_stdout("[adopt]");
    let (owner, url): (Option<String>, String) = one(
        &mut conn,
        "SELECT managed_by, database_url FROM cpi_connections WHERE name = 'abc'",
    )
    .await;
    assert_eq!(owner.as_deref(), Some("cpi"));
    assert!(url.contains("db.internal"));
    assert_eq!(f.cpi(&["diff"]).code, 0);
}

#[tokio::test]
async fn deleting_a_connection_row_keeps_its_projects() {
    let (f, mut conn) =
        Fixture::after("apply", "DELETE FROM cpi_connections WHERE name = 'abc'").await;
    let connection_id: Option<uuid::Uuid> = scalar(
        &mut conn,
        "SELECT connection_id FROM cpi_projects WHERE name = 'p1'",
    )
    .await;
    assert_eq!(connection_id, None, "ON DELETE SET NULL");

    // The next reconcile puts both back together.
    f.diff_then_apply(&[
        "+ Connection abc (create)",
        "~ Project p1 (update: connection) [drift: changed outside cpi]",
    ]);
    let linked: bool = scalar(
        &mut conn,
        "SELECT p.connection_id = c.id FROM cpi_projects p, cpi_connections c WHERE p.name = 'p1' AND c.name = 'abc'",
    )
    .await;
    assert!(linked);
}

#[tokio::test]
async fn edits_behind_cpis_back_are_reported_as_drift_and_set_back() {
    let (f, mut conn) = Fixture::after(
        "apply",
        "UPDATE cpi_projects SET description = 'hand edit' WHERE name = 'p1'",
    )
    .await;
    f.diff_then_apply(&[
        "~ Project p1 (update: description) [drift: changed outside cpi]",
        "(1 drifted from the manifests)",
    ]);
    let desc: String = scalar(
        &mut conn,
        "SELECT description FROM cpi_projects WHERE name = 'p1'",
    )
    .await;
    assert_eq!(desc, "p1 exports");
    let drifted: i32 = scalar(
        &mut conn,
        "SELECT drifted FROM cpi_reconcile_runs ORDER BY started_at DESC LIMIT 1",
    )
    .await;
    assert_eq!(drifted, 1);
}

#[tokio::test]
async fn concurrent_applies_are_serialized() {
    let f = Fixture::new().await;
    for i in 0..50 {
        f.write(
            &format!("projects/gen{i}.yaml"),
            &project(&format!("gen{i}"), "abc", "/in"),
        );
    }
    assert_eq!(f.cpi(&["migrate"]).code, 0);
    let spawn = || {
        Cpi::new(["apply"])
            .db(&f.db)
            .manifests(f.dir.path())
            .command()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = (0..3).map(|_| spawn()).collect();
    for c in children {
        let r: Run = c.wait_with_output().unwrap().into();
        r.assert_code(0);
    }
    let mut conn = f.db.connect().await;
    let n: i64 = scalar(&mut conn, "SELECT count(*) FROM cpi_projects").await;
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
    assert_eq!(f.cpi(&["diff"]).code, 0);
}

#[tokio::test]
async fn two_owners_never_touch_each_others_rows() {
    let f = Fixture::new().await;
    let a = f.dir.path();
    let b = tempfile::tempdir().unwrap();
    write(
        b.path(),
        "c.yaml",
        &connection("xyz", "XYZ", "postgresql://u@h/xyz", "x.pass"),
    );
    write(b.path(), "x.pass", "pw");
    assert_eq!(f.cpi_in(&["apply", "--owner", "team-a"], a).code, 0);
    assert_eq!(f.cpi_in(&["apply", "--owner", "team-b"], b.path()).code, 0);
    // Team B's empty folder deletes only team B's rows.
    let empty = tempfile::tempdir().unwrap();
    f.cpi_in(
        &["apply", "--owner", "team-b", "--allow-delete"],
        empty.path(),
    )
    .assert_code(0)
    .assert_stdout("Plan: 0 to create, 0 to update, 1 to delete.");
    assert_eq!(f.cpi_in(&["diff", "--owner", "team-a"], a).code, 0);
    // Declaring team A's connection as team B is a conflict.
    f.cpi_in(&["diff", "--owner", "team-b"], a)
        .assert_code(1)
        .assert_output("is managed by owner \"team-a\"");
}

#[test]
fn diff_against_another_folder_needs_no_database_nor_secrets() {
    let base_dir = tempfile::tempdir().unwrap();
    let head = tempfile::tempdir().unwrap();
    for d in [base_dir.path(), head.path()] {
        base(d);
        std::fs::remove_file(d.join("abc.pass")).unwrap();
    }
    let r = diff_against(head.path(), base_dir.path(), &[]);
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
    let r = diff_against(head.path(), base_dir.path(), &["--output", "json"]);
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
    cpi(&["validate", "--manifests", "examples/manifests"]).assert_code(0);
}
