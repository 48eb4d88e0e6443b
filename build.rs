//! Build script: records the git commit the binary is built from, for
//! `cpi --version`. Outside a checkout (a source tarball) or without git the
//! commit is "unknown"; the build never fails for want of it.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    let commit = std::env::var("CPI_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CPI_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-env-changed=CPI_GIT_COMMIT");
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the ref it names
    // (a commit on the branch). Worktrees keep both in their own git dir.
    for path in ["HEAD", "refs/heads", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
