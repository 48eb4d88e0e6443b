//! `examples/quickstart` on a fresh clone: no database setup, the embedded
//! PostgreSQL under `.cpi/` of the working directory (the repository root).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::fs::{copy_dir, file_names};
use crate::support::wait::wait_for;
use crate::support::{free_port, Cpi, Run};

/// `examples/quickstart` copied into `tmp/clone` as a fresh clone has it,
/// its connection moved from the default port to a free one (so that it
/// never meets a quickstart running on the same machine): the clone, the
/// port and the connection manifest as it came.
fn fresh_clone(tmp: &Path) -> (PathBuf, u16, String) {
    let repo = tmp.join("clone");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart"),
        &repo.join("examples/quickstart"),
        &[],
    );
    let port = free_port();
    let conn = repo.join("examples/quickstart/manifests/connections/quickstart.yaml");
    let text = std::fs::read_to_string(&conn).unwrap();
    std::fs::write(&conn, text.replace("54329", &port.to_string())).unwrap();
    (repo, port, text)
}

#[test]
fn quickstart_applies_on_a_fresh_clone_with_the_embedded_database() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, port, text) = fresh_clone(tmp.path());
    assert!(text.contains("127.0.0.1:54329/quickstart"));

    let inbox = repo.join("examples/quickstart/samples");
    let files = || file_names(&inbox);
    let before = files();

    let run = |args: &[&str]| -> Run {
        Cpi::new(args)
            .current_dir(&repo)
            .manifests("examples/quickstart/manifests")
            .embedded_port(port)
            .run()
    };
    let v = run(&["validate"]);
    v.assert_code(0)
        .assert_stdout("1 connection(s), 1 project(s)");

    let a = run(&["apply"]);
    assert_eq!(a.code, 0, "{}", a.all());
    assert!(repo.join(".cpi/embedded/password").exists());
    let d = run(&["diff"]);
    assert_eq!(d.code, 0, "{}", d.all());

    // The Connection reaches the quickstart database with the generated password.
    let t = run(&["connections", "test", "quickstart"]);
    t.assert_code(0).assert_stdout("Connection successful");
    let password = std::fs::read_to_string(repo.join(".cpi/embedded/password")).unwrap();
    for r in [&v, &a, &d, &t] {
        assert!(!r.all().contains(password.trim()));
    }
    assert_eq!(
        files(),
        before,
        "none of these commands touches the samples"
    );
}

/// `examples/quickstart.rs`, compiled into the tests so that its seeding is
/// the code under test (its `main` drives the same `cpi run` as below).
#[allow(dead_code)]
#[path = "../../examples/quickstart.rs"]
mod example;

#[tokio::test]
async fn quickstart_daemon_imports_the_samples_and_leaves_the_checkout_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, port, _) = fresh_clone(tmp.path());
    let samples = repo.join("examples/quickstart/samples");
    let before = file_names(&samples);
    let inbox = repo.join(".cpi/quickstart/inbox");

    example::seed(&samples, &inbox).unwrap();
    let mut daemon = Stopping(
        Cpi::new(["run", "--settle", "200ms"])
            .current_dir(&repo)
            .manifests("examples/quickstart/manifests")
            .embedded_port(port)
            .command()
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let processed = inbox.join("processed");
    let done = wait_for(
        "both samples in .cpi/quickstart/inbox/processed/",
        Duration::from_secs(120),
        || {
            let processed = processed.clone();
            async move { (processed.is_dir() && file_names(&processed).len() == 2).then_some(()) }
        },
    )
    .await;
    if done.is_ok() {
        // While the daemon (and so the embedded server) still runs.
        let url = crate::support::db::embedded_url(&repo.join(".cpi"), port, "quickstart");
        let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM customers")
            .fetch_one(&mut db)
            .await
            .unwrap();
        assert!(n > 0, "customers were imported");
    }
    crate::support::bin::signal(daemon.0.id(), "-TERM");
    let status = daemon.0.wait().unwrap();
    done.unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(
        file_names(&samples),
        before,
        "the samples stay where they are"
    );
    assert!(file_names(&inbox).iter().all(|n| n == "processed"));

    // A second run drops nothing: both files were imported before.
    example::seed(&samples, &inbox).unwrap();
    assert!(file_names(&inbox).iter().all(|n| n == "processed"));
}

/// The daemon, stopped on drop even when an assertion fails: SIGTERM first,
/// so that it stops the embedded PostgreSQL it started.
struct Stopping(std::process::Child);

impl Drop for Stopping {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            for _ in 0..100 {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
