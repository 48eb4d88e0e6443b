//! Inbox folders: which files are candidates, when a file is ready (its
//! size and mtime unchanged for `settle`, seen by this process or told by
//! the mtime itself), and where it goes after its job
//! (`processed/`, or `failed/` with `<name>.error.json`). Nothing here
//! deletes a file but its own copy of one.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::config::ProjectConfig;

/// Suffixes of files still being written by their producer.
const TEMP_SUFFIXES: &[&str] = &[".tmp", ".part", ".partial", ".crdownload"];

/// Whether a file name may be imported: not hidden, not a temp name, not
/// one of cpi's own error reports.
pub fn is_candidate(file_name: &str) -> bool {
    let lower = file_name.to_ascii_lowercase();
    !file_name.starts_with('.')
        && !TEMP_SUFFIXES.iter().any(|s| lower.ends_with(s))
        && !lower.ends_with(".error.json")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    size: u64,
    mtime: SystemTime,
    /// When size and mtime were first seen with these values.
    since: Instant,
    /// Handed out as ready; not again until released.
    emitted: bool,
}

/// Tracks the files of one inbox across scans, by `K` (a path, or where a
/// file is: [`crate::location::FileRef`]).
#[derive(Debug)]
pub struct Readiness<K = PathBuf> {
    seen: HashMap<K, Seen>,
}

impl<K> Default for Readiness<K> {
    fn default() -> Self {
        Readiness {
            seen: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + std::hash::Hash + Ord> Readiness<K> {
    /// Feeds one listing (path, size, mtime) taken at `now` (`wall` by the
    /// clock mtimes are in); returns the files that became ready, in name
    /// order.
    ///
    /// A file is ready once it has been listed unchanged for `settle`, or at
    /// once when its mtime is already `settle` in the past: every write
    /// moves the mtime, so the file has not been written for that long. A
    /// file written elsewhere and renamed in (what the docs ask producers
    /// to do) thus costs no settle wait; an mtime in the future (a clock
    /// ahead of ours) only counts what this process saw.
    pub fn observe(
        &mut self,
        listing: &[(K, u64, SystemTime)],
        settle: Duration,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<K> {
        let present: HashSet<&K> = listing.iter().map(|(p, _, _)| p).collect();
        self.seen.retain(|p, _| present.contains(p));
        let mut ready = Vec::new();
        for (path, size, mtime) in listing {
            let entry = self.seen.entry(path.clone()).or_insert(Seen {
                size: *size,
                mtime: *mtime,
                since: now,
                emitted: false,
            });
            if entry.size != *size || entry.mtime != *mtime {
                // Still being written (or replaced): start settling again.
                *entry = Seen {
                    size: *size,
                    mtime: *mtime,
                    since: now,
                    emitted: false,
                };
                continue;
            }
            let quiet = wall.duration_since(*mtime).is_ok_and(|age| age >= settle);
            if !entry.emitted && (quiet || now.duration_since(entry.since) >= settle) {
                entry.emitted = true;
                ready.push(path.clone());
            }
        }
        ready.sort();
        ready
    }

    /// Makes a file eligible again (its job must be tried once more).
    pub fn release<Q>(&mut self, path: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if let Some(s) = self.seen.get_mut(path) {
            s.emitted = false;
        }
    }

    /// Drops what is known of `path` (it was moved away by its job): if it
    /// is listed again, it is a new file. Whether it was known.
    pub fn forget<Q>(&mut self, path: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.seen.remove(path).is_some()
    }

    /// Whether some file is still settling (the inbox needs another look soon).
    pub fn settling(&self) -> bool {
        self.seen.values().any(|s| !s.emitted)
    }
}

/// The candidate files directly in `inbox` (not in its subfolders, where
/// `processed/` and `failed/` live).
pub fn list(inbox: &Path) -> std::io::Result<Vec<(PathBuf, u64, SystemTime)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(inbox)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_candidate(name) {
            continue;
        }
        // DirEntry::metadata does not follow symlinks: a link is never read.
        let Ok(meta) = entry.metadata() else { continue };
        if meta.file_type().is_symlink() {
            symlink_skipped(&entry.path());
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        out.push((
            entry.path(),
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        ));
    }
    Ok(out)
}

/// Logs a symlinked inbox file once per path and process: a link could
/// make the daemon read (and move) a file outside the inbox.
fn symlink_skipped(path: &Path) {
    static LOGGED: std::sync::Mutex<Option<HashSet<PathBuf>>> = std::sync::Mutex::new(None);
    let mut logged = LOGGED.lock().unwrap();
    if logged
        .get_or_insert_with(HashSet::new)
        .insert(path.to_path_buf())
    {
        tracing::warn!(file = %path.display(), "a symlink in the inbox is never followed; it is left alone");
    }
}

/// Where imported and rejected files go.
pub fn processed_dir(config: &ProjectConfig, inbox: &Path) -> PathBuf {
    config.processed_path(inbox)
}

/// Where rejected files and their reports go (`failed/` unless the config says).
pub fn failed_dir(config: &ProjectConfig, inbox: &Path) -> PathBuf {
    config.failed_path(inbox)
}

/// The name a file gets in `dir`: its own, or prefixed with the job id when
/// a file of that name is already there (nothing is ever overwritten).
pub fn destination(dir: &Path, file_name: &str, job_id: &str) -> PathBuf {
    let plain = dir.join(file_name);
    if plain.exists() {
        dir.join(format!("{job_id}_{file_name}"))
    } else {
        plain
    }
}

/// Moves `file` into `dir`. Across file systems the move never leaves half
/// a file and never two copies: the copy goes to a hidden temporary name,
/// is synced and linked to its final name before the original is removed.
pub fn move_into(file: &Path, dir: &Path, job_id: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let to = destination(dir, &name, job_id);
    match std::fs::rename(file, &to) {
        Ok(()) => Ok(to),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => copy_across(file, dir, &name, job_id),
        Err(e) => Err(e),
    }
}

/// The move of `file` into `dir` on another file system. The copy goes to
/// a hidden temporary name (`.<name>.<job>.tmp`, never a candidate), is
/// synced, then linked to its final name (a link never replaces a name, so
/// a file already there gets the `<job>_` prefix instead), and the folder
/// synced: `dir` holds the whole file under its final name or nothing (a
/// full disk, a mount gone). Only then is the original removed. When it
/// cannot be, the new copy is removed again: the file stays once, in the
/// inbox, and the caller retries the move (leaving both would put two
/// copies in `dir` at the next attempt).
fn copy_across(file: &Path, dir: &Path, name: &str, job_id: &str) -> std::io::Result<PathBuf> {
    let tmp = dir.join(format!(".{name}.{job_id}.tmp"));
    let placed = copy_synced(file, &tmp).and_then(|()| link_free(&tmp, dir, name, job_id));
    // The final name holds the file now, or the copy failed: either way
    // the temporary name goes.
    if let Err(e) = std::fs::remove_file(&tmp) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::error!(file = %tmp.display(), error = %e, "cannot remove the temporary copy of a move");
        }
    }
    let to = placed?;
    let done = sync_dir(dir).and_then(|()| std::fs::remove_file(file));
    let Err(e) = done else {
        return Ok(to);
    };
    let undone = std::fs::remove_file(&to);
    tracing::error!(
        from = %file.display(),
        copy = %to.display(),
        error = %e,
        copy_removed = undone.is_ok(),
        "a move across file systems copied the file but cannot remove the original; \
         the copy is removed again so that the file exists once, in the inbox"
    );
    if let Err(u) = undone {
        return Err(std::io::Error::new(
            u.kind(),
            format!(
                "the original {} cannot be removed ({e}), nor the copy {} ({u})",
                file.display(),
                to.display()
            ),
        ));
    }
    Err(std::io::Error::new(
        e.kind(),
        format!(
            "copied to {} but the original cannot be removed ({e}); the copy was removed again",
            to.display()
        ),
    ))
}

/// Copies `from` to a new file `to`, synced to disk; on failure `to` is
/// left for the caller to remove.
fn copy_synced(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .or_else(|e| {
            // A temporary copy left by a crash: this job's own name.
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                std::fs::remove_file(to)?;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(to)
            } else {
                Err(e)
            }
        })?;
    std::io::copy(&mut src, &mut dst)?;
    dst.sync_all()
}

/// Gives the synced `tmp` its final name in `dir`: `name`, or
/// `<job>_name` when `name` is taken. A hard link never replaces a name;
/// where the file system has no hard links, a rename to a name checked
/// free just before.
fn link_free(tmp: &Path, dir: &Path, name: &str, job_id: &str) -> std::io::Result<PathBuf> {
    let plain = dir.join(name);
    let prefixed = dir.join(format!("{job_id}_{name}"));
    for to in [plain, prefixed] {
        match std::fs::hard_link(tmp, &to) {
            Ok(()) => return Ok(to),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPERM | libc::EOPNOTSUPP | libc::EMLINK)
                ) =>
            {
                if to.exists() {
                    continue;
                }
                std::fs::rename(tmp, &to)?;
                return Ok(to);
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!(
            "{name} and {job_id}_{name} are both taken in {}",
            dir.display()
        ),
    ))
}

/// Syncs `dir` itself, so that the names it now holds survive a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// `<name>.error.json` beside a rejected file.
#[derive(Debug, Serialize)]
pub struct ErrorReport<'a> {
    /// The job that rejected the file.
    pub job_id: String,
    /// The project whose inbox held it.
    pub project: &'a str,
    /// The file's name.
    pub file: &'a str,
    /// Why the whole file failed, if it did.
    pub error: Option<&'a str>,
    /// The row errors kept in the job.
    pub errors: serde_json::Value,
    /// How many row errors there were in all.
    pub errors_total: u64,
    /// Each check's verdict (count, sample rows with their lines), when the file has checks.
    #[serde(skip_serializing_if = "is_empty_list")]
    pub checks: serde_json::Value,
}

fn is_empty_list(v: &serde_json::Value) -> bool {
    v.as_array().is_none_or(Vec::is_empty)
}

/// Writes `report` as `<file>.error.json` beside `file` (a file already in
/// `failed/`), atomically (temp file, fsync, then a hard link, which never
/// replaces an existing name). When that name is taken, the report gets
/// the job id prefix (`<job>_<file>.error.json`); it never overwrites.
pub fn write_report_beside(file: &Path, job_id: &str, report: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.error.json.{job_id}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(report)?;
        f.sync_all()?;
    }
    let plain = dir.join(format!("{name}.error.json"));
    let prefixed = dir.join(format!("{job_id}_{name}.error.json"));
    let linked = match std::fs::hard_link(&tmp, &plain) {
        Ok(()) => Ok(plain),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::hard_link(&tmp, &prefixed).map(|()| prefixed)
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&tmp);
    linked
}

#[cfg(test)]
mod tests;
