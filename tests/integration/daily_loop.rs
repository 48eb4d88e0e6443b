//! The operator's daily loop: the line a bad row is reported on, the one
//! error of a broken `.csv.gz`, counters that never go down, the CLI in a
//! pipe and the error in `cpi jobs list`, the dashboard across replicas.

use std::path::Path;

use serde_json::json;

use crate::support::import::Env;
use crate::support::{Cpi, Run};

/// `cpi ARGS --database-url <the test database>`, off the runtime.
async fn cpi_on(env: &Env, args: &[&str]) -> Run {
    Cpi::new(args).db(&env.db).run_async().await
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn regression_crlf_files_report_the_same_line_as_lf_files() {
    let env = Env::new(json!({"table": "t", "mode": "append"})).await;
    env.exec("CREATE TABLE t (id int, amount numeric)").await;
    let lf = "id,amount\n1,1.5\n2,2.5\n3,x\n4,4.5\n";
    let crlf = lf.replace('\n', "\r\n");
    // A blank line and a quoted field over two lines before the bad value
    // (line 6 in both).
    let multi = "id,amount\n1,1\n\n\"2\",\"2\n\"\n3,x\n";
    let multi_crlf = multi.replace('\n', "\r\n");
    for (name, text, line) in [
        ("lf.csv", lf.to_string(), 4),
        ("crlf.csv", crlf.clone(), 4),
        ("multi_lf.csv", multi.to_string(), 6),
        ("multi_crlf.csv", multi_crlf, 6),
    ] {
        let f = env.file(name, text.as_bytes());
        let r = cpi_on(&env, &["import", "--project", "p", path(&f)]).await;
        r.assert_code(1).assert_stdout(&format!(
            "{name}:{line}: column \"amount\": \"x\" is not a valid numeric"
        ));
    }
    // The library says the same, in the message and in the row error.
    for (name, text) in [("lib_lf.csv", lf.to_string()), ("lib_crlf.csv", crlf)] {
        let o = env.import(name, text.as_bytes()).await;
        let error = o.error.as_deref().unwrap_or_default();
        assert!(error.starts_with(&format!("{name}:4: ")), "{error}");
        assert_eq!(o.errors[0].line, 4, "{:?}", o.errors);
    }
    assert_eq!(env.count("t").await, 0);
}
