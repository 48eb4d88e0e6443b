//! The embedded default: when no management database is given, cpi runs a
//! private PostgreSQL under the state dir (`<state>/embedded/`), started
//! from the server binaries on PATH or under `/usr/lib/postgresql/*/bin`.
//!
//! - First use: `initdb` (superuser `cpi`, a generated password in
//!   `<state>/embedded/password`, mode 0600; scram on 127.0.0.1 only), then
//!   the databases `cpi` (management) and `quickstart` (a scratch target).
//! - Every use: reuse the data dir; if the server is already running (another
//!   cpi process uses it) connect to it, else `pg_ctl start`.
//! - Exit: the [`Embedded`] guard stops the server when the last cpi process
//!   using it lets go. Each user holds a shared lock on `users.lock`; a
//!   process that can take it exclusively is the last one. `start.lock`
//!   serializes start and stop, so no process attaches to a server that
//!   another is stopping.
//! - As root (PostgreSQL refuses to run as root) the server runs as the
//!   `postgres` system user, which owns the data dir.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sqlx::{Connection, PgConnection};

use crate::secret::{self, Secret};

/// The default port: 5432 with a 9 appended, so it never meets a system
/// PostgreSQL on 5432. Two state dirs in use at once need two ports
/// (`--embedded-port`).
pub const DEFAULT_PORT: u16 = 54329;
/// The superuser of the embedded instance.
pub const USER: &str = "cpi";
/// The management database.
pub const DATABASE: &str = "cpi";
/// A scratch target database (the quickstart imports into it).
pub const SCRATCH_DATABASE: &str = "quickstart";
/// Server binaries, in this order: `$CPI_POSTGRES_BIN` (a folder; only
/// there when set), PATH, then the highest version under this root.
pub const FALLBACK_ROOT: &str = "/usr/lib/postgresql";
const BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
/// The unprivileged user that runs the server when cpi runs as root.
pub const SYSTEM_USER: &str = "postgres";

/// Why the embedded PostgreSQL could not start; each says what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// No `initdb`/`pg_ctl`/`postgres` on PATH or under the fallback root.
    #[error("no management database given, and no PostgreSQL server binaries ({}) were found on PATH or under {FALLBACK_ROOT}/*/bin to run the embedded one. Either install PostgreSQL (e.g. `apt-get install postgresql`), or give --database-url (or --database-url-file, CPI_DATABASE_URL) for an existing server", BINARIES.join(", "))]
    NoBinaries,
    /// Running as root without the system user PostgreSQL must run as.
    #[error("cpi runs as root and PostgreSQL refuses to: the embedded server runs as the `{SYSTEM_USER}` system user, which does not exist. Create it (`useradd --system {SYSTEM_USER}`), run cpi as an unprivileged user, or give --database-url")]
    NoSystemUser,
    /// The system user cannot reach the state dir (path, reason).
    #[error("the `{SYSTEM_USER}` user that runs the embedded server (cpi runs as root) cannot reach {0} ({1}); choose a --state-dir it can reach (e.g. under /var/lib or /tmp), or give --database-url")]
    Unreachable(String, String),
    /// A step (initdb, start, create database) failed.
    #[error("embedded PostgreSQL in {dir}: {message}")]
    Failed {
        /// The instance's data folder.
        dir: String,
        /// What failed, with the tool's own message.
        message: String,
    },
}

fn failed(dir: &Path, message: impl Into<String>) -> EmbeddedError {
    EmbeddedError::Failed {
        dir: dir.display().to_string(),
        message: message.into(),
    }
}

/// The folder holding `initdb`, `pg_ctl` and `postgres`, or `None`.
pub fn find_binaries(
    override_dir: Option<&Path>,
    path_env: Option<&std::ffi::OsStr>,
    fallback_root: &Path,
) -> Option<PathBuf> {
    let complete = |d: &Path| BINARIES.iter().all(|b| d.join(b).is_file());
    if let Some(d) = override_dir {
        return complete(d).then(|| d.to_path_buf());
    }
    if let Some(found) = path_env
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|d| complete(d))
    {
        return Some(found);
    }
    // Debian-style versioned folders (`/usr/lib/postgresql/15/bin`): the
    // highest version wins.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(fallback_root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            complete(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

/// `(uid, gid)` of `user` in an `/etc/passwd` text.
pub fn passwd_entry(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 4 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// The port of a running server, from line 4 of its `postmaster.pid`.
pub fn pid_file_port(text: &str) -> Option<u16> {
    text.lines().nth(3)?.trim().parse().ok()
}

/// Whom the server runs as: ourselves, or (as root) the system user.
#[derive(Debug, Clone, Copy)]
struct RunAs(Option<(u32, u32)>);

impl RunAs {
    fn detect() -> Result<RunAs, EmbeddedError> {
        if !is_root() {
            return Ok(RunAs(None));
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        passwd_entry(&passwd, SYSTEM_USER)
            .map(|ids| RunAs(Some(ids)))
            .ok_or(EmbeddedError::NoSystemUser)
    }

    fn command(self, program: PathBuf, cwd: &Path) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(program);
        // The server user may not be allowed into cpi's working directory.
        c.current_dir(cwd);
        // A group of its own: a Ctrl-C (or `timeout`) aimed at cpi's process
        // group must not kill the `pg_ctl stop` that cpi runs while it exits.
        c.process_group(0);
        if let Some((uid, gid)) = self.0 {
            // std drops root's supplementary groups when it changes uid.
            c.uid(uid).gid(gid);
        }
        c
    }

    fn own(self, path: &Path) -> std::io::Result<()> {
        match self.0 {
            Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid)),
            None => Ok(()),
        }
    }
}

fn is_root() -> bool {
    // The owner of a file we just created is our effective uid.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A running embedded server, used by this process; dropping it stops the
/// server unless another cpi process still uses it.
#[derive(Debug)]
pub struct Embedded {
    dir: PathBuf,
    bin: PathBuf,
    run_as: RunAs,
    port: u16,
    url: Secret,
    /// Our shared lock on `users.lock`, held for as long as we use the server.
    users: Option<File>,
    /// Whether this process started the server (rather than joined a running one).
    pub started: bool,
}

impl Embedded {
    /// The management database's URL.
    pub fn url(&self) -> &Secret {
        &self.url
    }

    /// The TCP port the instance listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A database of the instance (e.g. [`SCRATCH_DATABASE`]).
    pub fn database_url(&self, database: &str) -> Secret {
        let mut u = url::Url::parse(self.url.expose()).expect("our own URL parses");
        u.set_path(database);
        Secret::new(u.to_string())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts (or attaches to) the instance under `state_dir/embedded`.
    pub async fn start(state_dir: &Path, port: u16) -> Result<Embedded, EmbeddedError> {
        let bin = find_binaries(
            std::env::var_os("CPI_POSTGRES_BIN")
                .as_deref()
                .map(Path::new),
            std::env::var_os("PATH").as_deref(),
            Path::new(FALLBACK_ROOT),
        )
        .ok_or(EmbeddedError::NoBinaries)?;
        let run_as = RunAs::detect()?;
        let dir = std::path::absolute(state_dir)
            .map_err(|e| failed(state_dir, e.to_string()))?
            .join("embedded");
        // The state dir gets the default mode (the server user, as root,
        // must pass through it); the instance's own folder is private.
        std::fs::create_dir_all(state_dir)
            .map_err(|e| failed(&dir, format!("cannot create {}: {e}", state_dir.display())))?;
        if !dir.exists() {
            DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| failed(&dir, format!("cannot create the folder: {e}")))?;
        }
        run_as.own(&dir).map_err(|e| {
            failed(
                &dir,
                format!("cannot hand the folder to {SYSTEM_USER}: {e}"),
            )
        })?;
        if run_as.0.is_some() {
            check_reachable(&dir, run_as)?;
        }
        let start_lock = lock_file(&dir.join("start.lock"))?;
        let lock = tokio::task::spawn_blocking(move || start_lock.lock().map(|()| start_lock))
            .await
            .map_err(|e| failed(&dir, e.to_string()))?
            .map_err(|e| failed(&dir, format!("cannot lock start.lock: {e}")))?;
        let users = lock_file(&dir.join("users.lock"))?;
        users
            .lock_shared()
            .map_err(|e| failed(&dir, format!("cannot lock users.lock: {e}")))?;
        let mut me = Embedded {
            dir: dir.clone(),
            bin,
            run_as,
            port,
            url: Secret::new(String::new()),
            users: Some(users),
            started: false,
        };
        // On error `me` drops here and stops a server only it was using.
        let result = me.bring_up().await;
        drop(lock);
        result.map(|()| me)
    }

    async fn bring_up(&mut self) -> Result<(), EmbeddedError> {
        let data = self.data();
        let password_path = self.dir.join("password");
        if !data.join("PG_VERSION").exists() {
            self.init(&password_path)?;
        }
        let password = std::fs::read_to_string(&password_path).map_err(|e| {
            failed(
                &self.dir,
                format!(
                    "cannot read {}: {e}; without it the instance cannot be used: remove {} to start over with an empty one",
                    password_path.display(),
                    self.dir.display()
                ),
            )
        })?;
        let password = Secret::new(password.trim());
        secret::register(&password);
        match self.running_port() {
            Some(port) => {
                if port != self.port {
                    tracing::info!(
                        port,
                        "the embedded PostgreSQL already runs on another port; using it"
                    );
                }
                self.port = port;
            }
            None => {
                self.pg_ctl_start()?;
                self.started = true;
            }
        }
        let mut url = url::Url::parse(&format!(
            "postgres://{USER}@127.0.0.1:{}/{DATABASE}",
            self.port
        ))
        .expect("a static URL parses");
        let _ = url.set_password(Some(password.expose()));
        self.url = Secret::new(url.to_string());
        secret::register(&self.url);
        self.create_databases().await?;
        tracing::info!(
            dir = %self.dir.display(),
            port = self.port,
            "no management database given: using the embedded PostgreSQL ({}); give --database-url for another server",
            if self.started { "started" } else { "already running" }
        );
        Ok(())
    }

    fn init(&self, password_path: &Path) -> Result<(), EmbeddedError> {
        let data = self.data();
        if data.exists()
            && std::fs::read_dir(&data)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            return Err(failed(
                &self.dir,
                format!(
                    "{} is not empty but holds no PostgreSQL cluster; move it away",
                    data.display()
                ),
            ));
        }
        tracing::info!(dir = %self.dir.display(), "creating the embedded PostgreSQL (first run)");
        // Two v4 UUIDs: 244 bits from the operating system's generator.
        let password = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        crate::output::write_secret(password_path, &Secret::new(password.clone()))
            .map_err(|e| failed(&self.dir, e.to_string()))?;
        // initdb reads the password from a file the server user can read;
        // it lives only while initdb runs.
        let pwfile = self.dir.join("initdb.pw");
        crate::output::write_secret(&pwfile, &Secret::new(password))
            .map_err(|e| failed(&self.dir, e.to_string()))?;
        let _ = self.run_as.own(&pwfile);
        DirBuilder::new()
            .mode(0o700)
            .create(&data)
            .map_err(|e| failed(&self.dir, format!("cannot create {}: {e}", data.display())))?;
        let _ = self.run_as.own(&data);
        let out = self
            .run_as
            .command(self.bin.join("initdb"), &self.dir)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output();
        let _ = std::fs::remove_file(&pwfile);
        let out = out.map_err(|e| failed(&self.dir, format!("cannot run initdb: {e}")))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&data);
            return Err(failed(
                &self.dir,
                format!(
                    "initdb failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        // Only 127.0.0.1, and the socket inside the data dir (paths are
        // relative to it, which keeps the socket path short): nothing is
        // shared with a system PostgreSQL.
        let conf = data.join("postgresql.conf");
        let mut f = OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| failed(&self.dir, format!("cannot open {}: {e}", conf.display())))?;
        use std::io::Write;
        writeln!(
            f,
            "\n# cpi embedded\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '.'\nmax_connections = 50\nshared_buffers = 32MB\n"
        )
        .map_err(|e| failed(&self.dir, format!("cannot write {}: {e}", conf.display())))?;
        Ok(())
    }

    /// The port of the server running on our data dir, if one is.
    fn running_port(&self) -> Option<u16> {
        let status = self
            .run_as
            .command(self.bin.join("pg_ctl"), &self.dir)
            .arg("status")
            .arg("-D")
            .arg(self.data())
            .output()
            .ok()?;
        if !status.status.success() {
            return None;
        }
        pid_file_port(&std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?)
    }

    fn pg_ctl_start(&self) -> Result<(), EmbeddedError> {
        let log = self.dir.join("server.log");
        if !log.exists() {
            let _ = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&log);
        }
        let _ = self.run_as.own(&log);
        let out = self
            .run_as
            .command(self.bin.join("pg_ctl"), &self.dir)
            .arg("start")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {}", self.port))
            .output()
            .map_err(|e| failed(&self.dir, format!("cannot run pg_ctl: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let mut message = format!(
            "the server did not start (log {}): {}",
            log.display(),
            tail.join(" | ")
        );
        if text.contains("Address already in use") {
            message.push_str(&format!(
                "; port {} is taken: choose another with --embedded-port",
                self.port
            ));
        }
        Err(failed(&self.dir, message))
    }

    async fn create_databases(&self) -> Result<(), EmbeddedError> {
        let admin = self.database_url("postgres");
        let opts =
            crate::tls::connect_options(&admin).map_err(|e| failed(&self.dir, e.to_string()))?;
        let mut conn =
            tokio::time::timeout(Duration::from_secs(30), PgConnection::connect_with(&opts))
                .await
                .map_err(|_| failed(&self.dir, "timed out connecting to the embedded server"))?
                .map_err(|e| failed(&self.dir, secret::scrub_known(&e.to_string())))?;
        for db in [DATABASE, SCRATCH_DATABASE] {
            let (exists,): (bool,) =
                sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(db)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| failed(&self.dir, e.to_string()))?;
            if !exists {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE {}",
                    crate::config::quote_ident(db)
                )))
                .execute(&mut conn)
                .await
                .map_err(|e| failed(&self.dir, e.to_string()))?;
            }
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// Stops the server if no other cpi process uses it (see the module doc).
    fn release(&mut self) {
        let Some(users) = self.users.take() else {
            return;
        };
        let Ok(start_lock) = lock_file(&self.dir.join("start.lock")) else {
            return;
        };
        if start_lock.lock().is_err() {
            return;
        }
        drop(users);
        let Ok(probe) = lock_file(&self.dir.join("users.lock")) else {
            return;
        };
        if probe.try_lock().is_err() {
            tracing::debug!("the embedded PostgreSQL is still used by another cpi process");
            return;
        }
        if !self.data().join("postmaster.pid").exists() {
            return; // never started (a failed first run)
        }
        let out = self
            .run_as
            .command(self.bin.join("pg_ctl"), &self.dir)
            .arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t", "60"])
            .output();
        match out {
            Ok(o) if o.status.success() => tracing::info!("stopped the embedded PostgreSQL"),
            Ok(o) => tracing::warn!(
                "could not stop the embedded PostgreSQL ({}): {} {}",
                o.status,
                String::from_utf8_lossy(&o.stdout).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => tracing::warn!("could not run pg_ctl stop: {e}"),
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.release();
    }
}

fn lock_file(path: &Path) -> Result<File, EmbeddedError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            failed(
                path.parent().unwrap_or(path),
                format!("cannot open {}: {e}", path.display()),
            )
        })
}

/// As root, every folder above the data dir must let the server user pass.
fn check_reachable(dir: &Path, run_as: RunAs) -> Result<(), EmbeddedError> {
    let Some((uid, gid)) = run_as.0 else {
        return Ok(());
    };
    for a in dir.ancestors().skip(1) {
        let Ok(m) = std::fs::metadata(a) else {
            continue;
        };
        let mode = m.permissions().mode();
        let passes = if m.uid() == uid {
            mode & 0o100 != 0
        } else if m.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !passes {
            return Err(EmbeddedError::Unreachable(
                dir.display().to_string(),
                format!("{} has mode {:o}", a.display(), mode & 0o777),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_come_from_the_override_path_or_the_highest_version() {
        let d = tempfile::tempdir().unwrap();
        let mk = |rel: &str| {
            let bin = d.path().join(rel);
            std::fs::create_dir_all(&bin).unwrap();
            for b in BINARIES {
                std::fs::write(bin.join(b), "").unwrap();
            }
            bin
        };
        let v9 = mk("root/9/bin");
        let v15 = mk("root/15/bin");
        let root = d.path().join("root");
        std::fs::create_dir_all(d.path().join("root/16/bin")).unwrap(); // incomplete
        assert_eq!(find_binaries(None, None, &root), Some(v15.clone()));
        let path = std::env::join_paths([d.path().join("nope"), v9.clone()]).unwrap();
        assert_eq!(find_binaries(None, Some(&path), &root), Some(v9.clone()));
        assert_eq!(find_binaries(Some(&v9), Some(&path), &root), Some(v9));
        assert_eq!(find_binaries(Some(&d.path().join("x")), None, &root), None);
        assert_eq!(find_binaries(None, None, &d.path().join("none")), None);
    }

    #[test]
    fn a_folder_the_server_user_cannot_pass_is_reported() {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let closed = d.path().join("closed");
        let inner = closed.join("state/embedded");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        // A user that owns nothing here.
        let stranger = RunAs(Some((54321, 54321)));
        let e = check_reachable(&inner, stranger).unwrap_err().to_string();
        assert!(
            e.contains("has mode 700") && e.contains("--state-dir"),
            "{e}"
        );
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_reachable(&inner, stranger).unwrap();
        check_reachable(&inner, RunAs(None)).unwrap();
    }

    #[test]
    fn the_no_binaries_error_names_both_fixes() {
        let e = EmbeddedError::NoBinaries.to_string();
        assert!(
            e.contains("install PostgreSQL") && e.contains("--database-url"),
            "{e}"
        );
    }

    #[test]
    fn passwd_and_pid_file_parsing() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104:PostgreSQL:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(passwd_entry(passwd, "postgres"), Some((101, 104)));
        assert_eq!(passwd_entry(passwd, "nobody"), None);
        assert_eq!(
            pid_file_port("123\n/data\n1700000000\n54329\n.\n127.0.0.1\n"),
            Some(54329)
        );
        assert_eq!(pid_file_port("123\n"), None);
    }
}
