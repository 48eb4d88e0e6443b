//! The embedded default: with no management URL, cpi starts a private
//! PostgreSQL under the state dir, reuses it, and stops it on exit.

use std::path::Path;

use sqlx::{Connection, PgConnection};

use crate::support::db::{embedded_url, reachable};
use crate::support::fs::manifest;
use crate::support::{free_port, write, Cpi, Run};

/// `cpi ARGS --state-dir STATE --embedded-port PORT`, no management URL.
fn cpi_embedded(state: &Path, port: u16, args: &[&str]) -> Run {
    Cpi::new(args)
        .state_dir(state)
        .embedded_port(port)
        .env("CPI_LOG", "info")
        .run()
}

/// Whether the embedded instance of `state` answers on `port`.
async fn up(state: &Path, port: u16) -> bool {
    reachable(&embedded_url(state, port, "cpi")).await
}

fn manifests(dir: &Path) {
    write(
        dir,
        "c.yaml",
        &manifest(
            "Connection",
            "scratch",
            "database_url: postgresql://cpi@127.0.0.1:1/quickstart",
        ),
    );
    write(
        dir,
        "p.yaml",
        &manifest(
            "Project",
            "p",
            "connection: scratch\nconfig:\n  inbox: /tmp/in",
        ),
    );
}

#[tokio::test]
async fn starts_then_reuses_the_data_then_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let m = tmp.path().join("m");
    manifests(&m);
    let port = free_port();

    let a = cpi_embedded(&state, port, &["apply", "--manifests", m.to_str().unwrap()]);
    a.assert_code(0)
        .assert_stderr("first run")
        .assert_stderr("using the embedded PostgreSQL (started)")
        .assert_stderr("stopped the embedded PostgreSQL");
    let password = std::fs::read_to_string(state.join("embedded/password")).unwrap();
    assert!(!a.all().contains(password.trim()));
    assert!(!up(&state, port).await, "stopped on exit");

    // A second run finds the cluster (no initdb) and the rows applied before.
    let d = cpi_embedded(&state, port, &["diff", "--manifests", m.to_str().unwrap()]);
    assert_eq!(d.code, 0, "data persists: {}", d.all());
    assert!(!d.stderr.contains("first run"), "{}", d.stderr);
    assert!(!up(&state, port).await, "stopped on exit");
}

#[tokio::test]
async fn a_running_instance_is_shared_and_stopped_by_its_last_user() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let port = free_port();

    // This test process is one user of the instance ...
    let held = cpi::embedded::Embedded::start(&state, port).await.unwrap();
    assert!(held.started);
    let mut c = PgConnection::connect(held.url().expose()).await.unwrap();
    sqlx::query("CREATE TABLE kept (x int)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();

    // ... a cpi process attaches to it, and leaves it running on exit.
    let r = cpi_embedded(&state, port, &["migrate"]);
    r.assert_code(0).assert_stderr("(already running)");
    assert!(!r.stderr.contains("stopped"), "{}", r.stderr);
    assert!(up(&state, port).await);

    // The last user stops it.
    drop(held);
    assert!(!up(&state, port).await);

    // Restarted on the same data: the table is still there.
    let again = cpi::embedded::Embedded::start(&state, port).await.unwrap();
    let mut c = PgConnection::connect(again.url().expose()).await.unwrap();
    sqlx::query("SELECT * FROM kept")
        .execute(&mut c)
        .await
        .unwrap();
    let scratch = again.database_url(cpi::embedded::SCRATCH_DATABASE);
    PgConnection::connect(scratch.expose()).await.unwrap();
}

#[test]
fn without_server_binaries_the_error_names_both_fixes() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Cpi::new(["migrate"])
        .state_dir(tmp.path())
        .env("CPI_POSTGRES_BIN", tmp.path().join("no-such-dir"))
        .run();
    r.assert_code(1)
        .assert_stderr("install PostgreSQL")
        .assert_stderr("--database-url");
}

#[test]
fn port_zero_is_a_usage_error() {
    let r = crate::support::cpi(&["migrate", "--embedded-port", "0"]);
    r.assert_code(1).assert_stderr("--embedded-port");
}

#[test]
fn commands_without_a_database_start_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let m = tmp.path().join("m");
    manifests(&m);
    let ms = m.to_str().unwrap();
    for args in [
        vec!["validate", "--manifests", ms],
        vec!["diff", "--manifests", ms, "--against", ms],
        vec!["schema"],
    ] {
        let r = cpi_embedded(&state, free_port(), &args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.all());
    }
    assert!(!state.exists());
}
