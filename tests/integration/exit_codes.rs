//! Every error exits 1, including usage errors clap would report as 2
//! (which `cpi diff` callers read as "changes").

use crate::support::{cpi, Cpi};

#[test]
fn unknown_flag_exits_1() {
    let r = cpi(&["diff", "--no-such-flag"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("--no-such-flag"));
}

#[test]
fn missing_argument_exits_1() {
    let r = cpi(&["connections", "show"]);
    r.assert_code(1).assert_stderr("<NAME>");
}

#[test]
fn missing_subcommand_exits_1() {
    assert_eq!(cpi(&[]).code, 1);
}

#[test]
fn help_exits_0_on_every_command() {
    for cmd in [
        vec!["--help"],
        vec!["validate", "--help"],
        vec!["diff", "--help"],
        vec!["apply", "--help"],
        vec!["migrate", "--help"],
        vec!["connections", "test", "--help"],
        vec!["projects", "list", "--help"],
    ] {
        let r = cpi(&cmd);
        assert_eq!(r.code, 0, "{cmd:?}: {}", r.all());
        assert!(r.stdout.contains("Usage:"), "{cmd:?}");
    }
}

#[test]
fn diff_without_database_exits_1() {
    // No URL means the embedded PostgreSQL; without server binaries, an error.
    let dir = tempfile::tempdir().unwrap();
    let r = Cpi::new(["diff"])
        .manifests(dir.path())
        .state_dir(dir.path().join("state"))
        .env("CPI_POSTGRES_BIN", dir.path().join("none"))
        .run();
    r.assert_code(1).assert_stderr("no management database");
}

#[test]
fn diff_on_missing_folder_exits_1() {
    let r = cpi(&[
        "diff",
        "--manifests",
        "/nonexistent/cpi-manifests",
        "--against",
        "/tmp",
    ]);
    r.assert_code(1).assert_stderr("does not exist");
}
