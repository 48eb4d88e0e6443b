//! The daemon as a process: `cpi run` on a [`Setup`] (manifests pointing at
//! the test database, one inbox per project), its log in a file that is
//! printed when the test fails, and the CSV files it imports.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::manifests::{connection_to, project};
use super::wait::wait_for;
use super::{write, Cpi, TestDb};

/// A running `cpi run`, killed when dropped; its log goes to a file.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cpi run` on `manifests` with quick intervals (each overridable
    /// in `extra`), logging to `log` and running in `log`'s folder.
    pub fn start(db: &TestDb, manifests: &Path, log: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_env(db, manifests, log, extra, &[])
    }

    /// [`Daemon::start`] with `env` set for the process.
    pub fn start_env(
        db: &TestDb,
        manifests: &Path,
        log: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cpi = Cpi::new(["run"]).db(db).manifests(manifests).args(extra);
        // Defaults a test may override (clap takes each flag once).
        for (flag, value) in [
            ("--interval", "2s"),
            ("--rescan", "1s"),
            ("--settle", "300ms"),
            ("--lease", "3s"),
        ] {
            if !extra.contains(&flag) {
                cpi = cpi.args([flag, value]);
            }
        }
        // The log's folder is the working directory (relative paths in tests).
        for (k, v) in env {
            cpi = cpi.env(k, v);
        }
        let mut cmd = cpi
            .env("CPI_LOG", "info,sqlx=warn")
            .current_dir(log.parent().unwrap())
            .command();
        cmd.stdout(Stdio::null()).stderr(file);
        Daemon {
            child: Some(cmd.spawn().expect("start cpi run")),
            log: log.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `needle`; the error names it.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> Result<(), String> {
        wait_for(&format!("{needle:?} in the log"), timeout, || {
            let found = self.log().contains(needle);
            async move { found.then_some(()) }
        })
        .await
    }

    /// Sends `sig` (`-TERM`, `-KILL`, ...) to the process.
    pub fn signal(&self, sig: &str) {
        super::bin::signal(self.pid(), sig);
    }

    /// SIGTERM, then fails the test (quoting the log) unless the process
    /// exits 0 within `secs` seconds.
    pub fn stop(&mut self, secs: u64) {
        self.signal("-TERM");
        assert_eq!(
            self.wait(Duration::from_secs(secs)),
            Some(0),
            "{}",
            self.log()
        );
    }

    /// Waits for the process to exit; its exit code (`None`: still running
    /// after `timeout`, or killed by a signal).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- {} (last lines) ---", self.log.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A folder with manifests (a connection `target` to the test database
/// itself, password `pw-1`) and one inbox per project.
pub struct Setup {
    /// The temp folder holding everything.
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// The folder for `projects`, each `(name, defaults)` (see [`project`]).
    pub fn new(db: &TestDb, projects: &[(&str, &str)]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("manifests");
        write(
            &m,
            "connections/target.yaml",
            &connection_to("target", db, "the test database"),
        );
        write(&m, "target.pass", "pw-1\n");
        for (name, defaults) in projects {
            let inbox = dir.path().join("inbox").join(name);
            std::fs::create_dir_all(&inbox).unwrap();
            write(
                &m,
                &format!("projects/{name}.yaml"),
                &project(name, "target", &inbox, defaults),
            );
        }
        Setup { dir }
    }

    /// One project `p` appending into a fresh `events` table (see
    /// [`events_table`]); the setup and a pool on the test database.
    pub async fn events(db: &TestDb) -> (Setup, PgPool) {
        let s = Setup::new(db, &[("p", "{table: events, mode: append}")]);
        let pool = db.pool().await;
        events_table(&pool).await;
        (s, pool)
    }

    /// The manifests folder.
    pub fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    /// The inbox of `project`.
    pub fn inbox(&self, project: &str) -> PathBuf {
        self.dir.path().join("inbox").join(project)
    }

    /// `big.tmp` in the folder, outside every inbox, with `rows` rows for
    /// `events` (see [`big_csv`]): renamed into an inbox, it is an import
    /// that takes a while.
    pub fn big_tmp(&self, rows: u64) -> PathBuf {
        let tmp = self.dir.path().join("big.tmp");
        big_csv(&tmp, rows);
        tmp
    }

    /// A log file `name` in the folder.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A CSV for the `events` table: `n` rows from id `first_id`, tagged `tag`.
pub fn csv_rows(first_id: u64, n: u64, tag: &str) -> String {
    let mut s = String::from("id,tag,n\n");
    for i in first_id..first_id + n {
        s.push_str(&format!("{i},{tag},{}\n", i % 97));
    }
    s
}

/// A CSV for `events` of `rows` rows (ids from 0), large enough that its
/// import is still running when the test acts.
pub fn big_csv(path: &Path, rows: u64) {
    super::fs::write_csv(path, "id,tag,n", rows, |i| {
        let i = i - 1;
        format!("{i},big-file-row-with-some-text-{i},{}", i % 1000)
    });
}

/// Creates the `events` table the projects' `{table: events}` import into.
pub async fn events_table(pool: &PgPool) {
    events_table_named(pool, "events").await;
}

/// Creates a table of the `events` shape named `name` (a plain identifier).
pub async fn events_table_named(pool: &PgPool, name: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {name} (id bigint PRIMARY KEY, tag text NOT NULL, n int NOT NULL)"
    )))
    .execute(pool)
    .await
    .unwrap();
}

/// `cpi events list -o json` on `db` with `manifests`, after a daemon's run
/// (the notification tests check it holds no secret).
pub fn events_list(db: &TestDb, manifests: &Path) -> super::Run {
    Cpi::new(["events", "list", "-o", "json"])
        .db(db)
        .manifests(manifests)
        .run()
}
