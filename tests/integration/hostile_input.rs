//! One file or one manifest must never stop the daemon (issue 28): a header
//! of 200,000 columns, secret files that are devices, FIFOs or too large, a
//! manifest nested 200,000 levels deep, and passwords that surface outside
//! a URL's password field, each tried on the real binary.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::import::Env;
use crate::support::{admin_url, cpi_command, write, Cpi, Run, TestDb};

/// Runs `cmd` to its end, or kills it after `limit` and fails the test
/// naming `what`: a refusal that hangs (a FIFO, a quadratic parse) must
/// fail, not stall the suite.
fn run_within(what: &str, mut cmd: Command, limit: Duration) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cpi");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap().into()
}

/// `cpi validate --manifests DIR`, within 20 s.
fn validate(what: &str, manifests: &Path) -> Run {
    let mut cmd = cpi_command();
    cmd.args(["validate", "--manifests", manifests.to_str().unwrap()]);
    run_within(what, cmd, Duration::from_secs(20))
}

/// A header line of `n` distinct names.
fn wide_header(n: usize) -> String {
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    format!("{}\n", names.join(","))
}

#[tokio::test]
async fn regression_a_wide_header_is_refused_before_per_column_work() {
    // create_table from the header (the duplicate check was quadratic) and
    // an existing table (each of the 200,000 names was looked up and
    // reported): both refuse the header as soon as it is read.
    let env = Env::with_config(|inbox| {
        json!({"name": "p", "inbox": inbox, "tables": [
            {"file_pattern": "new*.csv", "table": "made", "create_table": true},
            {"file_pattern": "old*.csv", "table": "t"}
        ]})
    })
    .await;
    env.exec("CREATE TABLE t (c0 text)").await;
    let header = wide_header(200_000);
    for name in ["new_wide.csv", "old_wide.csv"] {
        let f = env.file(name, format!("{header}x\n").as_bytes());
        let cmd = Cpi::new(["import", "--project", "p", f.to_str().unwrap()])
            .db(&env.db)
            .command();
        let started = Instant::now();
        let r = tokio::task::spawn_blocking(move || {
            run_within("import of a wide header", cmd, Duration::from_secs(60))
        })
        .await
        .unwrap();
        assert_eq!(r.code, 1, "{}", r.all());
        r.assert_stdout(&format!(
            "{name}:1: the header has 200000 columns, more than the 1600 a table may have"
        ));
        // One message, not one per column.
        assert!(r.stdout.len() < 2_000, "{} bytes of output", r.stdout.len());
        // Generous: the quadratic check took minutes at this width.
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
    let made: i64 = crate::support::db::scalar_i64(
        &env.pool,
        "SELECT count(*) FROM pg_tables WHERE tablename = 'made'",
    )
    .await;
    assert_eq!(made, 0, "no table is created from a refused header");
}

