//! Hostile files and set-ups (issue 28, items 5–8): a move across file
//! systems onto a full disk or from an inbox that cannot give the file up,
//! a file appended to while it imports, a version-1 server certificate,
//! and credentials stored in plain text. Real file systems (tmpfs mounts:
//! the tests run as root), the real daemon in-process, the real binary and
//! a private PostgreSQL with TLS.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::support::daemon::{csv_rows, Daemon, Setup};
use crate::support::fs::{file_names, manifest};
use crate::support::tls::TlsServer;
use crate::support::wait::wait_for;
use crate::support::{free_port, write, Cpi, TestDb};

/// A tmpfs mounted at a folder for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`64k`) at `at` (created if missing).
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs needs root");
        Tmpfs(at.to_path_buf())
    }

    /// `mount -o remount,OPTS`.
    fn remount(&self, opts: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Polls until `check` holds; fails naming `what`.
async fn until(what: &str, secs: u64, check: impl Fn() -> bool) {
    wait_for(what, Duration::from_secs(secs), || {
        let ok = check();
        async move { ok.then_some(()) }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_move_across_file_systems_never_leaves_half_a_file_or_two_copies() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p", "{table: events, mode: append}")]);
    let pool = db.pool().await;
    crate::support::daemon::events_table(&pool).await;
    // The inbox and `processed/` on two file systems: a move is a copy.
    // `processed/` holds 64 KiB, the file about 320 KiB: a full disk
    // in the middle of the copy.
    let inbox_fs = Tmpfs::mount(&s.inbox("p"), "4m");
    let processed = s.inbox("p").join("processed");
    let processed_fs = Tmpfs::mount(&processed, "64k");
    let mut settings = cpi::daemon::Settings::new(s.manifests());
    settings.interval = Duration::from_secs(2);
    settings.rescan = Duration::from_millis(500);
    settings.settle = Duration::from_secs(1);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(cpi::daemon::run(settings, pool.clone(), None, async {
        let _ = rx.await;
    }));
    let tag = "a-tag-that-makes-the-file-large-enough";
    let a = csv_rows(1, 7_000, tag);
    assert!(a.len() > 200 * 1024, "{}", a.len());
    std::fs::write(s.inbox("p").join("a.csv"), &a).unwrap();
    crate::support::wait::wait_i64(&pool, 30, "import a", "SELECT count(*) FROM events", 7_000)
        .await
        .unwrap();
    // The copy failed (no space): no partial file, no temporary copy, and
    // the original intact in the inbox.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(file_names(&processed), Vec::<std::ffi::OsString>::new());
    assert_eq!(
        std::fs::read_to_string(s.inbox("p").join("a.csv")).unwrap(),
        a
    );
    // Room again: the retried move lands the whole file, once.
    processed_fs.remount("size=2m");
    until("a.csv in processed/", 30, || {
        !s.inbox("p").join("a.csv").exists() && processed.join("a.csv").exists()
    })
    .await;
    assert_eq!(std::fs::read_to_string(processed.join("a.csv")).unwrap(), a);
    assert_eq!(file_names(&processed), vec!["a.csv"]);

    // An inbox that cannot give the file up (read-only): the copy is made,
    // the original cannot be removed, and the copy is removed again: one
    // copy, in the inbox, until the move can finish.
    let b = csv_rows(100_001, 100, "b");
    std::fs::write(s.inbox("p").join("b.csv"), &b).unwrap();
    inbox_fs.remount("ro");
    crate::support::wait::wait_i64(&pool, 30, "import b", "SELECT count(*) FROM events", 7_100)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(file_names(&processed), vec!["a.csv"]);
    assert_eq!(
        std::fs::read_to_string(s.inbox("p").join("b.csv")).unwrap(),
        b
    );
    inbox_fs.remount("rw");
    until("b.csv in processed/", 30, || {
        !s.inbox("p").join("b.csv").exists() && processed.join("b.csv").exists()
    })
    .await;
    assert_eq!(file_names(&processed), vec!["a.csv", "b.csv"]);
    assert_eq!(std::fs::read_to_string(processed.join("b.csv")).unwrap(), b);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let jobs = crate::support::db::scalar_i64(&pool, "SELECT count(*) FROM cpi_import_jobs").await;
    assert_eq!(jobs, 2, "each file imported once");
    assert_eq!(
        crate::support::db::scalar_i64(&pool, "SELECT count(*) FROM events").await,
        7_100
    );
    let _ = tx.send(());
    daemon.await.unwrap().unwrap();
    drop(processed_fs);
    drop(inbox_fs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_file_changed_during_its_import_is_not_loaded() {
    let env = crate::support::import::Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (a int, b text, c text)").await;
    let path = env.inbox().join("growing.csv");
    crate::support::fs::write_csv(&path, "a,b,c", 400_000, |i| format!("{i},b{i},c"));
    // A producer still writing: a row every millisecond, in one write each.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            let mut i = 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                f.write_all(format!("{i},late,c\n").as_bytes()).unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let r = env.run(&path).await;
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let e = match r {
        Err(e) => e,
        Ok(o) => panic!("a file appended to while it imports loaded: {o:?}"),
    };
    let text = e.to_string();
    assert!(
        matches!(e, cpi::import::ImportError::FileChanged { .. }),
        "{e:?}"
    );
    assert!(
        text.contains("growing.csv: the file changed during its import"),
        "{text}"
    );
    assert!(
        matches!(
            cpi::import::error_policy(&e, 0),
            cpi::import::Action::Retry(_)
        ),
        "still being written: tried again later"
    );
    assert_eq!(env.count("t").await, 0, "nothing loaded");
    let job = env
        .rows("SELECT status || ' ' || coalesce(error, '') FROM cpi_import_jobs")
        .await;
    assert_eq!(job.len(), 1);
    assert!(job[0].starts_with("failed "), "{job:?}");
    assert!(job[0].contains("changed during its import"), "{job:?}");

    // Settled: imported whole, its size and hash those of the same bytes.
    let o = env.run(&path).await.unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let lines = bytes.iter().filter(|b| **b == b'\n').count() as i64;
    assert_eq!(env.count("t").await, lines - 1, "{o:?}");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let row = env
        .rows(&format!(
            "SELECT file_size || ' ' || file_sha256 FROM cpi_import_jobs WHERE id = '{}'",
            o.job_id
        ))
        .await;
    assert_eq!(row, vec![format!("{} {sha}", bytes.len())]);
}

/// `cpi connections test NAME` with the manifests applied to `mgmt`.
fn connection_test(mgmt: &str, secrets: &Path, name: &str) -> String {
    let r = Cpi::new(["connections", "test", name, "--timeout", "10"])
        .database_url(mgmt)
        .args([std::ffi::OsStr::new("--secrets-dir"), secrets.as_os_str()])
        .run();
    assert_eq!(r.code, 1, "{name}: {}", r.all());
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    v["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn regression_a_version_1_server_certificate_is_refused_as_such() {
    let v1 = TlsServer::start_v1();
    let v3 = TlsServer::start();
    let mgmt = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    let conn =
        |name: &str, url: String| manifest("Connection", name, &format!("database_url: \"{url}\""));
    let full = |ca: &Path| format!("sslmode=verify-full&sslrootcert={}", ca.display());
    let docs = [
        conn(
            "v1",
            v1.url("localhost", "postgres", &full(&v1.file("ca.crt"))),
        ),
        conn(
            "v3-wrongca",
            v3.url("localhost", "postgres", &full(&v3.file("other-ca.crt"))),
        ),
        conn(
            "v3-wronghost",
            v3.url("127.0.0.2", "postgres", &full(&v3.file("ca.crt"))),
        ),
    ];
    write(&m, "c.yaml", &docs.join("---\n"));
    let a = Cpi::new(["apply"]).db(&mgmt).manifests(&m).run();
    assert_eq!(a.code, 0, "{}", a.all());
    let url = mgmt.url();
    let secrets = dir.path();
    let msg = connection_test(&url, secrets, "v1");
    assert!(msg.contains("version 1 certificate"), "{msg}");
    assert!(!msg.contains("UnsupportedCertVersion"), "{msg}");
    assert!(
        !msg.contains("unknown CA") && !msg.contains("wrong host"),
        "{msg}"
    );
    // A version-3 certificate's own faults keep their own words.
    let msg = connection_test(&url, secrets, "v3-wrongca");
    assert!(msg.contains("unknown CA"), "{msg}");
    assert!(!msg.contains("version"), "{msg}");
    let msg = connection_test(&url, secrets, "v3-wronghost");
    assert!(msg.contains("wrong host name"), "{msg}");
    assert!(!msg.contains("version"), "{msg}");
}

const PLAIN_WARNING: &str = "connection URLs (with their passwords) are stored in plain text";

/// How many times `cpi run` (until it is running) and `cpi serve` (until
/// it listens) with `extra` log [`PLAIN_WARNING`], in that order.
async fn warnings_of_run_and_serve(db: &TestDb, s: &Setup, extra: &[&str]) -> (usize, usize) {
    let tag = if extra.is_empty() { "plain" } else { "key" };
    let mut d = Daemon::start(db, &s.manifests(), &s.log(&format!("run-{tag}")), extra);
    d.wait_log("cpi is running", Duration::from_secs(30))
        .await
        .unwrap();
    let run = d.log().matches(PLAIN_WARNING).count();
    d.stop(30);

    let port = free_port();
    let log = s.log(&format!("serve-{tag}"));
    let mut child = Cpi::new(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .db(db)
        .args(extra)
        .command()
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The warning is logged before the port is bound.
    until("cpi serve listening", 30, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    // A clean stop: a running `cpi serve` holds back key rotations
    // (cpi_processes) until it leaves.
    crate::support::bin::signal(child.id(), "-TERM");
    let _ = child.wait();
    let serve = std::fs::read_to_string(&log)
        .unwrap()
        .matches(PLAIN_WARNING)
        .count();
    (run, serve)
}

#[tokio::test]
async fn regression_run_serve_and_apply_warn_that_urls_are_stored_in_plain_text_without_a_key() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("p", "{table: events, mode: append}")]);

    // Without a key: apply, run and serve each warn once, naming the flag
    // and the page.
    let plain = Cpi::new(["apply"]).db(&db).manifests(s.manifests()).run();
    assert_eq!(plain.code, 0, "{}", plain.all());
    assert_eq!(
        plain.stderr.matches(PLAIN_WARNING).count(),
        1,
        "{}",
        plain.stderr
    );
    assert!(
        plain.stderr.contains("--encryption-key-file"),
        "{}",
        plain.stderr
    );
    assert!(
        plain.stderr.contains("docs/security.md"),
        "{}",
        plain.stderr
    );
    assert_eq!(warnings_of_run_and_serve(&db, &s, &[]).await, (1, 1));

    // With a key (the rows re-encrypted first: apply refuses plain text
    // beside encrypted rows): no warning.
    let key = s.dir.path().join("url.key");
    let k = Cpi::new(["keygen", "--output", key.to_str().unwrap()]).run();
    assert_eq!(k.code, 0, "{}", k.all());
    let with_key = ["--encryption-key-file", key.to_str().unwrap()];
    let r = Cpi::new(["rekey"]).db(&db).args(with_key).run();
    assert_eq!(r.code, 0, "{}", r.all());
    let sealed = Cpi::new(["apply"])
        .db(&db)
        .manifests(s.manifests())
        .args(with_key)
        .run();
    assert_eq!(sealed.code, 0, "{}", sealed.all());
    assert!(!sealed.stderr.contains(PLAIN_WARNING), "{}", sealed.stderr);
    assert_eq!(warnings_of_run_and_serve(&db, &s, &with_key).await, (0, 0));
}
