//! `cpi serve`: its arguments and its warnings.

use std::process::Stdio;
use std::time::Duration;

use crate::support::{cpi, wait, Cpi, TestDb};

#[test]
fn help_exits_0() {
    let r = cpi(&["serve", "--help"]);
    r.assert_code(0)
        .assert_stdout("--api-token-file")
        .assert_stdout("--listen");
}

#[test]
fn a_missing_or_empty_token_file_exits_1_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    // No database is given: the token file is checked first.
    let r = cpi(&["serve", "--api-token-file", missing.to_str().unwrap()]);
    r.assert_code(1)
        .assert_stderr("cannot read --api-token-file");

    let empty = dir.path().join("empty");
    std::fs::write(&empty, " \n").unwrap();
    let r = cpi(&["serve", "--api-token-file", empty.to_str().unwrap()]);
    r.assert_code(1).assert_stderr("is empty");
}

#[test]
fn a_bad_listen_address_exits_1() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    let r = Cpi::new(["serve", "--listen", "not-an-address"])
        .db(&db)
        .run();
    r.assert_code(1)
        .assert_stderr("cannot listen on not-an-address");
}

#[test]
fn listening_beyond_loopback_without_a_token_warns() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    let mut child = Cpi::new(["serve", "--listen", "0.0.0.0:0"])
        .db(&db)
        .command()
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let seen = wait::read_until(stderr, "API listening", Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.unwrap_or_else(|e| panic!("{e}"));
    assert!(seen.contains("API listening"), "{seen}");
    assert!(seen.contains("WARN"), "{seen}");
    assert!(seen.contains("without an API token"), "{seen}");
}
