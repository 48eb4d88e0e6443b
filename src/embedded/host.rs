//! What the host provides: the server binaries, the user the server runs
//! as (as root), and the lock files that count cpi processes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{failed, EmbeddedError};
use super::names::{BINARIES, SYSTEM_USER};

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
pub(super) struct RunAs(pub(super) Option<(u32, u32)>);

impl RunAs {
    pub(super) fn detect() -> Result<RunAs, EmbeddedError> {
        if !is_root() {
            return Ok(RunAs(None));
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        passwd_entry(&passwd, SYSTEM_USER)
            .map(|ids| RunAs(Some(ids)))
            .ok_or(EmbeddedError::NoSystemUser)
    }

    pub(super) fn command(self, program: PathBuf, cwd: &Path) -> Command {
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

    pub(super) fn own(self, path: &Path) -> std::io::Result<()> {
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

pub(super) fn lock_file(path: &Path) -> Result<File, EmbeddedError> {
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
pub(super) fn check_reachable(dir: &Path, run_as: RunAs) -> Result<(), EmbeddedError> {
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
