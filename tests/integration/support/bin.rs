//! Running the real `cpi` binary: tests see what a user sees (output and
//! exit code), with no `CPI_*` variable leaking in from the environment.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

use super::TestDb;

/// The `cpi` binary under test, with no CPI_* variable inherited.
pub fn cpi_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cpi"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CPI_") || k == "DATABASE_URL" {
            c.env_remove(k);
        }
    }
    c
}

/// A finished run: exit code and both outputs as text.
pub struct Run {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// stdout and stderr together, for assertion messages and leak checks.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Fails, naming `what` and the needle, if stdout or stderr holds any of
    /// `secrets`.
    pub fn assert_hides(&self, what: &str, secrets: &[&str]) {
        for needle in secrets {
            assert!(
                !self.all().contains(needle),
                "{what} leaked {needle:?}:\n{}",
                self.all()
            );
        }
    }
}

impl Run {
    /// Fails, quoting both outputs, unless the exit code is `code`.
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "{}", self.all());
        self
    }

    /// Fails, quoting stdout, unless stdout holds `needle`.
    pub fn assert_stdout(&self, needle: &str) -> &Run {
        assert!(self.stdout.contains(needle), "{}", self.stdout);
        self
    }

    /// Fails, quoting stderr, unless stderr holds `needle`.
    pub fn assert_stderr(&self, needle: &str) -> &Run {
        assert!(self.stderr.contains(needle), "{}", self.stderr);
        self
    }

    /// Fails, quoting both outputs, unless stdout or stderr holds `needle`.
    pub fn assert_output(&self, needle: &str) -> &Run {
        assert!(self.all().contains(needle), "{}", self.all());
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `cpi ARGS` (blocking; call from `spawn_blocking` in async tests if it matters).
pub fn cpi(args: &[&str]) -> Run {
    Cpi::new(args).run()
}

/// One `cpi` invocation: the arguments, then the options each test would
/// otherwise spell out (management URL, manifests, state dir, port), in the
/// order they are added.
pub struct Cpi {
    cmd: Command,
}

impl Cpi {
    /// `cpi ARGS`.
    pub fn new<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Cpi {
        let mut cmd = cpi_command();
        cmd.args(args);
        Cpi { cmd }
    }

    /// Appends more arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Cpi {
        self.cmd.args(args);
        self
    }

    /// `--database-url URL`: the management database.
    pub fn database_url(self, url: &str) -> Cpi {
        self.args(["--database-url", url])
    }

    /// `--database-url` of this test database.
    pub fn db(self, db: &TestDb) -> Cpi {
        self.database_url(&db.url())
    }

    /// `--manifests DIR`.
    pub fn manifests(self, dir: impl AsRef<Path>) -> Cpi {
        self.args([OsStr::new("--manifests"), dir.as_ref().as_os_str()])
    }

    /// `--state-dir DIR`.
    pub fn state_dir(self, dir: impl AsRef<Path>) -> Cpi {
        self.args([OsStr::new("--state-dir"), dir.as_ref().as_os_str()])
    }

    /// `--embedded-port PORT`.
    pub fn embedded_port(self, port: u16) -> Cpi {
        self.args(["--embedded-port", &port.to_string()])
    }

    /// Sets an environment variable for the process.
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Cpi {
        self.cmd.env(key, value);
        self
    }

    /// Runs in `dir` (relative paths, `.cpi/` state).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Cpi {
        self.cmd.current_dir(dir);
        self
    }

    /// The command, for tests that spawn it and talk to the process.
    pub fn command(self) -> Command {
        self.cmd
    }

    /// Runs to the end (blocking).
    pub fn run(mut self) -> Run {
        self.cmd.output().expect("run cpi").into()
    }

    /// Runs to the end on a blocking thread, so async tests keep their runtime.
    pub async fn run_async(self) -> Run {
        tokio::task::spawn_blocking(move || self.run())
            .await
            .unwrap()
    }
}

/// Runs `cmd` to its end under `/usr/bin/time`: the run (time's own line
/// taken out of stderr), its wall time and its peak RSS in KiB. The
/// command's environment and directory carry over.
pub fn measured(cmd: &Command) -> (Run, std::time::Duration, u64) {
    let mut t = Command::new("/usr/bin/time");
    t.args(["-f", "RSS_KIB=%M"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        t.current_dir(d);
    }
    let started = std::time::Instant::now();
    let out = t.output().expect("/usr/bin/time (Debian package `time`)");
    let took = started.elapsed();
    let mut run: Run = out.into();
    let rss = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("RSS_KIB="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(u64::MAX);
    run.stderr = run
        .stderr
        .lines()
        .filter(|l| !l.starts_with("RSS_KIB="))
        .collect::<Vec<_>>()
        .join("\n");
    (run, took, rss)
}

/// `cpi diff --manifests HEAD --against BASE EXTRA...`: two folders
/// compared, no database.
pub fn diff_against(head: impl AsRef<Path>, base: impl AsRef<Path>, extra: &[&str]) -> Run {
    Cpi::new(["diff"])
        .manifests(head)
        .args([OsStr::new("--against"), base.as_ref().as_os_str()])
        .args(extra)
        .run()
}

/// A TCP port nothing listens on right now (for embedded instances that must
/// not meet another test's or a developer's).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a shell snippet the way CI runners do (`bash -eo pipefail`) in
/// `dir`, with the `cpi` under test first on PATH.
pub fn bash(dir: &Path, script: &str, env: &[(&str, String)]) -> Run {
    let bin = Path::new(env!("CARGO_BIN_EXE_cpi")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
        .into()
}

/// Sends `sig` (as `kill` spells it: `-INT`, `-TERM`, `-KILL`) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

/// Runs `program` (in `dir`, if given) and fails the test with its output
/// unless it exits 0; its stdout and stderr. A missing tool fails, never
/// skips: `scripts/test.sh` installs the tools the tests drive.
pub fn tool(program: &str, args: &[&str], dir: Option<&std::path::Path>) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = succeed(
        &format!("{program} {args:?} (scripts/test.sh installs it)"),
        &mut cmd,
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `psql URL -c "\copy TABLE FROM 'FILE' WITH (FORMAT csv, HEADER OPTIONS)"`:
/// the reference load that cpi's is compared with.
pub fn psql_copy(url: &str, table: &str, file: &std::path::Path, options: &str) {
    let copy = format!(
        "\\copy {table} FROM '{}' WITH (FORMAT csv, HEADER{options})",
        file.display()
    );
    succeed(
        "psql",
        Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-c", &copy]),
    );
}

/// Runs `cmd` to the end and fails the test, naming `what` and quoting the
/// command's output, unless it exits 0; returns the output for the caller's
/// own checks.
pub fn succeed(what: &str, cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
