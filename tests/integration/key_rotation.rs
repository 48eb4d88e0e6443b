//! Key rotation as the procedure the code enforces (#23): two daemons on one
//! management database go through add, deploy, promote, deploy, rekey,
//! retire, deploy; each step that would leave a running process unable to
//! read is refused, naming the process; no import and no connection test
//! fails at any step; and afterwards a dump of the whole management
//! database holds no URL, host or password of any connection, not even in
//! the reconcile history written before encryption was turned on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::PgPool;

use crate::support::daemon::Daemon;
use crate::support::fs::manifest;
use crate::support::wait::wait_for;
use crate::support::{write, Cpi, Run, TestDb};

const PASSWORD: &str = "Rot-Canary-Pw-8086";

struct World {
    db: TestDb,
    dir: tempfile::TempDir,
    url: String,
    pool: PgPool,
}

impl World {
    fn m(&self) -> PathBuf {
        self.dir.path().join("m")
    }

    fn inbox(&self) -> PathBuf {
        self.dir.path().join("inbox")
    }

    fn cpi(&self, args: &[&str], key: Option<&Path>) -> Run {
        let mut c = Cpi::new(args).db(&self.db).manifests(self.m());
        if let Some(k) = key {
            c = c.args([std::ffi::OsStr::new("--encryption-key-file"), k.as_os_str()]);
        }
        c.run()
    }

    /// `cpi run` with key file `key` (the copy "deployed" to that host).
    fn daemon(&self, name: &str, key: &Path) -> Daemon {
        Daemon::start(
            &self.db,
            &self.m(),
            &self.dir.path().join(format!("{name}.log")),
            &["--encryption-key-file", key.to_str().unwrap()],
        )
    }

    /// Waits until the running processes hold exactly `want` (sorted key
    /// id lists, one per process).
    async fn processes_hold(&self, want: &[Vec<String>]) {
        let mut want = want.to_vec();
        want.sort();
        wait_for(
            &format!("processes holding {want:?}"),
            Duration::from_secs(20),
            || {
                let pool = self.pool.clone();
                let want = want.clone();
                async move {
                    let mut held: Vec<Vec<String>> =
                        sqlx::query_scalar("SELECT key_ids FROM cpi_processes ORDER BY key_ids")
                            .fetch_all(&pool)
                            .await
                            .ok()?;
                    held.sort();
                    (held == want).then_some(())
                }
            },
        )
        .await
        .unwrap();
    }

    /// Drops a file into the inbox and waits for one daemon to import it.
    async fn import_one(&self, n: u32) {
        write(&self.inbox(), &format!("f{n}.csv"), &format!("id\n{n}\n"));
        wait_for(
            &format!("row {n} imported"),
            Duration::from_secs(30),
            || {
                let pool = self.pool.clone();
                async move {
                    let c: i64 = sqlx::query_scalar("SELECT count(*) FROM t WHERE id = $1")
                        .bind(n as i32)
                        .fetch_one(&pool)
                        .await
                        .ok()?;
                    (c == 1).then_some(())
                }
            },
        )
        .await
        .unwrap();
    }

    fn connection_test(&self, key: &Path) {
        self.cpi(&["connections", "test", "a"], Some(key))
            .assert_code(0);
    }
}

async fn world() -> World {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let url = db
        .url()
        .replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1);
    let m = dir.path().join("m");
    write(&m, "a.url", &format!("{url}\n"));
    write(
        &m,
        "c.yaml",
        &manifest("Connection", "a", "database_url_file: a.url"),
    );
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    write(
        &m,
        "p.yaml",
        &crate::support::manifests::project("p", "a", &inbox, "{table: t, mode: append}"),
    );
    let pool = db.pool().await;
    sqlx::query("CREATE TABLE t (id int)")
        .execute(&pool)
        .await
        .unwrap();
    World { db, dir, url, pool }
}

fn key_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect()
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
}

#[tokio::test]
async fn rotation_with_two_daemons_refuses_each_unsafe_step_and_leaves_no_url() {
    let w = world().await;
    let dir = w.dir.path();
    // Before encryption: the first apply stores the URL and its history in
    // plain text (the diff shows host and database, password masked).
    w.cpi(&["apply"], None).assert_code(0);
    let plain_diff: String = sqlx::query_scalar("SELECT diff FROM cpi_reconcile_runs")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert!(plain_diff.contains("127.0.0.1"), "{plain_diff}");

    // The key file: `admin` is the operator's copy, `h1` and `h2` the ones
    // deployed to the two hosts.
    let (admin, h1, h2) = (
        dir.join("admin.key"),
        dir.join("h1.key"),
        dir.join("h2.key"),
    );
    Cpi::new(["keygen", "--file"])
        .args([&admin])
        .run()
        .assert_code(0);
    let old = key_ids(&admin)[0].clone();
    copy(&admin, &h1);
    copy(&admin, &h2);
    let mut d1 = w.daemon("d1", &h1);
    let mut d2 = w.daemon("d2", &h2);
    w.processes_hold(&[vec![old.clone()], vec![old.clone()]])
        .await;
    // The daemons' reconcile encrypted the rows and the old history.
    w.import_one(1).await;
    w.connection_test(&admin);

    // 1. add: the new key goes last.
    let r = Cpi::new(["keys", "add", "--file"]).args([&admin]).run();
    r.assert_code(0).assert_stdout("added key");
    let ids = key_ids(&admin);
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], old, "the old key still encrypts");
    let new = ids[1].clone();
    assert!(r.stdout.contains(&new), "{}", r.stdout);
    assert!(
        !r.all().contains(
            std::fs::read_to_string(&admin)
                .unwrap()
                .lines()
                .last()
                .unwrap()
                .split(':')
                .nth(1)
                .unwrap()
        ),
        "the key itself is never printed"
    );

    // Promote before any deploy: refused, naming both processes; the file
    // is unchanged.
    let before = std::fs::read_to_string(&admin).unwrap();
    let r = w.cpi(
        &["keys", "promote", &new, "--file", admin.to_str().unwrap()],
        None,
    );
    r.assert_code(1).assert_stderr("do not hold it yet");
    assert!(
        r.stderr.contains(&format!("pid {}", d1.pid())),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("pid {}", d2.pid())),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_to_string(&admin).unwrap(), before);
    // A rekey with a file that already puts the new key first is refused too.
    let hand_promoted = dir.join("hand.key");
    std::fs::write(
        &hand_promoted,
        format!(
            "{}\n{}\n",
            before.lines().last().unwrap(),
            before.lines().find(|l| l.starts_with(&old)).unwrap()
        ),
    )
    .unwrap();
    w.cpi(&["rekey"], Some(&hand_promoted))
        .assert_code(1)
        .assert_stderr("could not read the result");

    // 2. deploy to h1 only: promote is still refused, naming d2 alone.
    copy(&admin, &h1);
    d1.stop(20);
    d1 = w.daemon("d1", &h1);
    w.processes_hold(&[vec![old.clone(), new.clone()], vec![old.clone()]])
        .await;
    w.import_one(2).await;
    let r = w.cpi(
        &["keys", "promote", &new, "--file", admin.to_str().unwrap()],
        None,
    );
    r.assert_code(1);
    assert!(
        r.stderr.contains(&format!("pid {}", d2.pid())),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains(&format!("pid {}", d1.pid())),
        "{}",
        r.stderr
    );
    // ... and to h2: now it may.
    copy(&admin, &h2);
    d2.stop(20);
    d2 = w.daemon("d2", &h2);
    w.processes_hold(&[
        vec![old.clone(), new.clone()],
        vec![old.clone(), new.clone()],
    ])
    .await;
    w.import_one(3).await;

    // 3. promote.
    w.cpi(
        &["keys", "promote", &new, "--file", admin.to_str().unwrap()],
        None,
    )
    .assert_code(0)
    .assert_stdout("now encrypts");
    assert_eq!(key_ids(&admin), vec![new.clone(), old.clone()]);
    w.connection_test(&admin);
    // Retiring the old key now: refused, rows are still sealed with it.
    let r = w.cpi(
        &["keys", "retire", &old, "--file", admin.to_str().unwrap()],
        None,
    );
    r.assert_code(1).assert_stderr("run cpi rekey first");

    // 4. deploy the promoted file, then rekey.
    for (h, d, name) in [(&h1, &mut d1, "d1"), (&h2, &mut d2, "d2")] {
        copy(&admin, h);
        d.stop(20);
        *d = w.daemon(name, h);
    }
    w.processes_hold(&[
        vec![new.clone(), old.clone()],
        vec![new.clone(), old.clone()],
    ])
    .await;
    w.import_one(4).await;
    w.cpi(&["rekey"], Some(&admin))
        .assert_code(0)
        .assert_stdout("re-encrypted 1 of 1");
    let stored: String = sqlx::query_scalar("SELECT database_url FROM cpi_connections")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert!(stored.starts_with(&format!("cpi:v1:{new}:")), "{stored}");
    w.import_one(5).await;
    w.connection_test(&admin);

    // 5. retire the old key and deploy.
    w.cpi(
        &["keys", "retire", &old, "--file", admin.to_str().unwrap()],
        None,
    )
    .assert_code(0);
    assert_eq!(key_ids(&admin), vec![new.clone()]);
    for (h, d, name) in [(&h1, &mut d1, "d1"), (&h2, &mut d2, "d2")] {
        copy(&admin, h);
        d.stop(20);
        *d = w.daemon(name, h);
    }
    w.processes_hold(&[vec![new.clone()], vec![new.clone()]])
        .await;
    w.import_one(6).await;
    w.connection_test(&admin);
    let list = w.cpi(&["keys", "list", "--file", admin.to_str().unwrap()], None);
    list.assert_code(0)
        .assert_stdout(&format!("key {new}: encrypts; 1 stored URL(s)"));

    // No import failed at any step.
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM cpi_import_jobs WHERE status <> 'succeeded'")
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!(failed, 0);
    d1.stop(20);
    d2.stop(20);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM cpi_processes")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "a stopped process deletes its row");

    // The whole management database, history included.
    let out = crate::support::bin::succeed(
        "pg_dump",
        std::process::Command::new("pg_dump").args(["--data-only", &w.db.url()]),
    );
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(dump.contains("cpi:v1:"), "the dump has the rows");
    let host_db = w.url.rsplit_once('@').unwrap().1.to_string();
    for needle in [
        PASSWORD,
        w.url.as_str(),
        "postgresql://",
        "postgres://",
        &host_db,
        "127.0.0.1",
    ] {
        assert!(!dump.contains(needle), "pg_dump holds {needle:?}");
    }
}

/// A running daemon re-reads its key file when it changes (#23): the key
/// added to it is held at once, so `cpi keys promote` succeeds without a
/// restart; a file that does not parse, or that drops the key the daemon
/// encrypts with, is refused with an error in its log and the daemon keeps
/// its keys and goes on importing.
#[tokio::test]
async fn a_running_daemon_rereads_its_key_file_and_refuses_a_bad_one() {
    let w = world().await;
    let dir = w.dir.path();
    let (admin, h1) = (dir.join("admin.key"), dir.join("h1.key"));
    Cpi::new(["keygen", "--file"])
        .args([&admin])
        .run()
        .assert_code(0);
    let old = key_ids(&admin)[0].clone();
    copy(&admin, &h1);
    let mut d = w.daemon("d", &h1);
    let pid = d.pid();
    w.processes_hold(&[vec![old.clone()]]).await;
    w.import_one(1).await;

    // add, then deploy the file to the running daemon: no restart.
    Cpi::new(["keys", "add", "--file"])
        .args([&admin])
        .run()
        .assert_code(0);
    let new = key_ids(&admin)[1].clone();
    copy(&admin, &h1);
    w.processes_hold(&[vec![old.clone(), new.clone()]]).await;
    d.wait_log("re-read the encryption key file", Duration::from_secs(10))
        .await
        .unwrap();
    w.cpi(
        &["keys", "promote", &new, "--file", admin.to_str().unwrap()],
        None,
    )
    .assert_code(0)
    .assert_stdout("now encrypts");
    copy(&admin, &h1);
    w.processes_hold(&[vec![new.clone(), old.clone()]]).await;
    w.cpi(&["rekey"], Some(&admin))
        .assert_code(0)
        .assert_stdout("re-encrypted 1 of 1");
    w.import_one(2).await;

    // A file that does not parse: refused, the keys kept, imports go on.
    let good = std::fs::read_to_string(&h1).unwrap();
    // (An in-place copy may be read half-written and refused for a moment
    // too: each wait names its own reason.)
    std::fs::write(&h1, "not a key file\n").unwrap();
    d.wait_log(
        "line 1: expected <key-id>:<base64 key>",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(d.log().contains("cannot be used: keeping the keys"));
    w.import_one(3).await;
    // A file without the key it encrypts with (the old key alone): refused.
    let old_line = good.lines().find(|l| l.starts_with(&old)).unwrap();
    std::fs::write(&h1, format!("{old_line}\n")).unwrap();
    d.wait_log(
        &format!("no longer holds key {new}"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    w.import_one(4).await;
    w.connection_test(&admin);
    let held: Vec<Vec<String>> = sqlx::query_scalar("SELECT key_ids FROM cpi_processes")
        .fetch_all(&w.pool)
        .await
        .unwrap();
    assert_eq!(held, vec![vec![new.clone(), old.clone()]]);
    // No key is ever written to the log.
    let log = d.log();
    for line in good
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(':'))
    {
        let key = line.split(':').nth(1).unwrap();
        assert!(!log.contains(key), "the log holds a key");
    }
    assert_eq!(d.pid(), pid, "the same process throughout");
    d.stop(20);
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM cpi_import_jobs WHERE status <> 'succeeded'")
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!(failed, 0);
}
