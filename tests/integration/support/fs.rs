//! Files for tests: manifests folders, inbox files, copies of the examples,
//! and small git repositories, all under temp dirs the test owns.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes `text` to `dir/rel`, creating folders.
pub fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

/// A `cpi/v1` manifest of `kind` named `name`; `spec` is the spec's YAML
/// lines without indentation.
pub fn manifest(kind: &str, name: &str, spec: &str) -> String {
    let mut s = format!("apiVersion: cpi/v1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n");
    for line in spec.lines() {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// The repository's root (where `examples/` and `Cargo.toml` are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A YAML file of the repository (a CI example, the pre-commit hooks), parsed.
pub fn repo_yaml(rel: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(repo_root().join(rel)).unwrap()).unwrap()
}

/// Copies the folder `from` to `to`, leaving out entries named in `skip` at
/// any depth.
pub fn copy_dir(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if skip.iter().any(|s| e.file_name() == *s) {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()), skip);
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The names in `dir`, sorted.
pub fn file_names(dir: &Path) -> Vec<OsString> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    names
}

/// Writes a CSV of `header` and one `row(i)` line for each `i` in `1..=rows`,
/// buffered: big files whose import takes long enough to interrupt.
pub fn write_csv(path: &Path, header: &str, rows: u64, row: impl Fn(u64) -> String) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(w, "{header}").unwrap();
    for i in 1..=rows {
        writeln!(w, "{}", row(i)).unwrap();
    }
    w.flush().unwrap();
}

/// Runs `git ARGS` in `dir` with a fixed author; panics with git's stderr.
pub fn git(dir: &Path, args: &[&str]) {
    super::bin::succeed(
        &format!("git {args:?}"),
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com"),
    );
}

/// The permission bits of `path` (`0o600` for a secret file).
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file below `dir`, relative to it, sorted (the inbox's whole state).
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
