//! Schema versions against binaries: a database migrated by a newer cpi
//! (simulated by a migration row beyond this binary's newest) stops every
//! command before it touches anything, with the message naming both
//! versions and exit code 1.

use crate::support::db::{exec, scalar_i64};
use crate::support::{Cpi, TestDb};

/// A migration this binary cannot know: far beyond migrations/.
const FUTURE: i64 = 99_990;

/// A database a newer cpi migrated with migration [`FUTURE`], which breaks
/// older binaries (it raised `cpi_schema_compat.oldest_binary` to itself).
async fn migrated_by_a_newer_cpi() -> TestDb {
    migrated_by_a_newer_cpi_with(true).await
}

async fn migrated_by_a_newer_cpi_with(breaking: bool) -> TestDb {
    let db = TestDb::new().await;
    Cpi::new(["migrate"]).db(&db).run().assert_code(0);
    let pool = db.pool().await;
    exec(
        &pool,
        &format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES ({FUTURE}, 'from a newer cpi', true, '\\x00', 1)"
        ),
    )
    .await;
    if breaking {
        exec(
            &pool,
            &format!("UPDATE cpi_schema_compat SET oldest_binary = {FUTURE}"),
        )
        .await;
    }
    db
}

/// What a command could have changed: the migration rows and the projects.
async fn fingerprint(db: &TestDb) -> (i64, i64) {
    let pool = db.pool().await;
    (
        scalar_i64(&pool, "SELECT count(*) FROM _sqlx_migrations").await,
        scalar_i64(&pool, "SELECT count(*) FROM cpi_projects").await,
    )
}

#[tokio::test]
async fn regression_older_binary_against_newer_schema_stops_before_touching_anything() {
    let db = migrated_by_a_newer_cpi().await;
    let before = fingerprint(&db).await;
    let known = *cpi::store::schema_version::known_versions().last().unwrap();
    let want = format!(
        "the management database is at schema {FUTURE}, newer than this cpi ({known}): upgrade cpi"
    );
    let manifests = tempfile::tempdir().unwrap();
    for args in [vec!["migrate"], vec!["apply"], vec!["jobs", "list"]] {
        let r = Cpi::new(&args)
            .db(&db)
            .manifests(manifests.path())
            .run_async()
            .await;
        r.assert_code(1).assert_stderr(&want);
        assert!(
            !r.all().contains("previously applied but is missing"),
            "{args:?}: {}",
            r.all()
        );
    }
    assert_eq!(fingerprint(&db).await, before, "nothing changed");
}

/// A rolling upgrade: the newer cpi's migrations are additive (it left
/// `cpi_schema_compat` as it was), so this older binary runs beside it,
/// reads and writes, and migrates nothing.
#[tokio::test]
async fn an_older_binary_runs_against_a_newer_additive_schema_and_migrates_nothing() {
    let db = migrated_by_a_newer_cpi_with(false).await;
    let before = fingerprint(&db).await;
    let manifests = tempfile::tempdir().unwrap();
    for args in [
        vec!["migrate"],
        vec!["migrate", "--dry-run"],
        vec!["apply"],
        vec!["jobs", "list"],
        vec!["projects", "list"],
    ] {
        let r = Cpi::new(&args)
            .db(&db)
            .manifests(manifests.path())
            .run_async()
            .await;
        r.assert_code(0);
        assert!(!r.all().contains("upgrade cpi:"), "{args:?}: {}", r.all());
    }
    let pool = db.pool().await;
    assert_eq!(
        fingerprint(&db).await.0,
        before.0,
        "no migration row added or removed"
    );
    // The apply ran (an empty manifests folder is a recorded run).
    assert!(scalar_i64(&pool, "SELECT count(*) FROM cpi_reconcile_runs").await >= 1);
}

#[tokio::test]
async fn migrate_dry_run_lists_what_would_run_and_runs_nothing() {
    let db = TestDb::new().await;
    let r = Cpi::new(["migrate", "--dry-run"]).db(&db).run_async().await;
    r.assert_code(0).assert_stdout("would run 0001 ");
    let all = cpi::store::schema_version::known_versions();
    assert_eq!(r.stdout.lines().count(), all.len(), "{}", r.stdout);
    let pool = db.pool().await;
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM _sqlx_migrations").await,
        -1,
        "the dry run created sqlx's table"
    );

    // Migrated, then the newest migration's row dropped (a schema one
    // release older): the dry run names that one alone.
    Cpi::new(["migrate"]).db(&db).run().assert_code(0);
    let newest = *all.last().unwrap();
    exec(
        &pool,
        &format!("DELETE FROM _sqlx_migrations WHERE version = {newest}"),
    )
    .await;
    let r = Cpi::new(["migrate", "--dry-run"]).db(&db).run_async().await;
    r.assert_code(0);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert!(
        r.stdout.starts_with(&format!("would run {newest:04} ")),
        "{}",
        r.stdout
    );
    let r = Cpi::new(["migrate", "--dry-run"]).db(&db).run_async().await;
    assert_eq!(r.stdout.lines().count(), 1, "still pending: {}", r.stdout);
}

/// The daemon's start migrates through `store::migrate`, as `cpi migrate`
/// does: two processes started together on an empty database both succeed,
/// (sqlx's advisory lock makes the second wait rather than fail on objects
/// the first created) and every migration is applied.
#[tokio::test]
async fn two_processes_starting_together_migrate_once() {
    let db = TestDb::new().await;
    let spawn = || {
        Cpi::new(["migrate"])
            .db(&db)
            .command()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pool = db.pool().await;
    let known = cpi::store::schema_version::known_versions();
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM _sqlx_migrations WHERE success").await,
        known.len() as i64
    );
}

#[tokio::test]
async fn regression_a_writing_command_against_an_older_schema_refuses_instead_of_migrating() {
    let db = TestDb::new().await;
    Cpi::new(["migrate"]).db(&db).run().assert_code(0);
    let pool = db.pool().await;
    let newest = *cpi::store::schema_version::known_versions().last().unwrap();
    // A schema one release older: the newest migration not recorded.
    exec(
        &pool,
        &format!("DELETE FROM _sqlx_migrations WHERE version = {newest}"),
    )
    .await;
    let before = fingerprint(&db).await;
    let manifests = tempfile::tempdir().unwrap();
    for args in [
        vec!["apply"],
        vec!["jobs", "list"],
        vec!["prune", "--older-than", "30d"],
    ] {
        let r = Cpi::new(&args)
            .db(&db)
            .manifests(manifests.path())
            .run_async()
            .await;
        r.assert_code(1)
            .assert_stderr("older than this cpi (1 migrations pending): run `cpi migrate` first");
    }
    assert_eq!(fingerprint(&db).await, before, "nothing changed");
    // The daemon's path (cpi migrate) upgrades it; then apply works.
    Cpi::new(["migrate"]).db(&db).run().assert_code(0);
    Cpi::new(["apply"])
        .db(&db)
        .manifests(manifests.path())
        .run_async()
        .await
        .assert_code(0);
}

#[tokio::test]
async fn apply_on_an_empty_database_creates_the_schema() {
    let db = TestDb::new().await;
    let manifests = tempfile::tempdir().unwrap();
    Cpi::new(["apply"])
        .db(&db)
        .manifests(manifests.path())
        .run_async()
        .await
        .assert_code(0);
    let known = cpi::store::schema_version::known_versions();
    assert_eq!(
        scalar_i64(
            &db.pool().await,
            "SELECT count(*) FROM _sqlx_migrations WHERE success"
        )
        .await,
        known.len() as i64
    );
}
