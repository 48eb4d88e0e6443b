//! `cpi convert-legacy`: env_var configs → manifests that apply and then
//! diff clean, with no URL ever printed.

use crate::support::fs::mode;
use crate::support::{cpi_command, write, Cpi, Run, TestDb};

const PASSWORD: &str = "L3gacy-pw-7781";

fn legacy_input(dir: &std::path::Path) {
    write(
        dir,
        "abc.yaml",
        "name: abc_nightly\ndescription: ABC nightly exports\nconnection:\n  env_var: ABC_DATABASE_URL\ninbox: /srv/in/abc\ndefaults:\n  primary_key: id\ntables:\n  - file_pattern: \"orders_*.csv\"\n    table: sales.orders\n    mode: upsert\n    primary_key: [order_id]\n",
    );
    write(
        dir,
        "more/abc_weekly.json",
        r#"{"connection": {"env_var": "ABC_DATABASE_URL"}, "inbox": "/srv/in/abc_weekly"}"#,
    );
    write(
        dir,
        "wh.yml",
        "name: stock\nconnection: {env_var: WAREHOUSE_URL}\ninbox: /srv/in/wh\ndefaults: {mode: replace, table: stock}\n",
    );
}

#[tokio::test]
async fn converted_manifests_apply_and_then_diff_clean() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("legacy");
    let out = dir.path().join("manifests");
    let secrets = dir.path().join("secrets");
    legacy_input(&input);
    let abc_url = format!("postgresql://importer:{PASSWORD}@db.internal:5432/abc");

    let convert = |env: &[(&str, &str)]| -> Run {
        let mut c = cpi_command();
        c.args(["convert-legacy", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&out)
            .arg("--secrets-out")
            .arg(&secrets);
        c.env_remove("WAREHOUSE_URL")
            .env_remove("ABC_DATABASE_URL")
            .envs(env.iter().copied())
            .output()
            .unwrap()
            .into()
    };

    // A variable that is not set: named, and nothing written.
    let r = convert(&[("ABC_DATABASE_URL", &abc_url)]);
    r.assert_code(1).assert_stderr("WAREHOUSE_URL is not set");
    assert!(!r.all().contains(PASSWORD));
    assert!(!out.exists() && !secrets.exists());

    let r = convert(&[
        ("ABC_DATABASE_URL", &abc_url),
        (
            "WAREHOUSE_URL",
            "postgresql://postgres@127.0.0.1:5432/warehouse",
        ),
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains(PASSWORD), "{}", r.all());
    assert!(!r.all().contains("postgresql://"), "{}", r.all());
    assert!(
        r.stdout
            .contains("connection abc_database_url: URL from $ABC_DATABASE_URL"),
        "{}",
        r.stdout
    );
    for f in ["abc_database_url.url", "warehouse_url.url"] {
        assert_eq!(mode(&secrets.join(f)), 0o600, "{f}");
    }
    let weekly = std::fs::read_to_string(out.join("projects/abc_weekly.yaml")).unwrap();
    assert!(weekly.contains("connection: abc_database_url"), "{weekly}");

    let url = db.url();
    let m = [
        "--manifests",
        out.to_str().unwrap(),
        "--secrets-dir",
        secrets.to_str().unwrap(),
        "--database-url",
        &url,
    ];
    let run = |cmd: &str| Cpi::new([cmd]).args(m).run();
    let v = run("validate");
    v.assert_code(0)
        .assert_stdout("2 connection(s), 3 project(s)");
    let a = run("apply");
    assert_eq!(a.code, 0, "{}", a.all());
    let d = run("diff");
    assert_eq!(d.code, 0, "{}", d.all());
    assert!(!a.all().contains(PASSWORD) && !d.all().contains(PASSWORD));

    let mut conn = db.connect().await;
    let (stored, config): (String, serde_json::Value) = sqlx::query_as(
        "SELECT c.database_url, p.config FROM cpi_projects p JOIN cpi_connections c ON c.id = p.connection_id WHERE p.name = 'abc_nightly'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(stored, abc_url);
    assert_eq!(config["tables"][0]["table"], "sales.orders");
    assert!(config.get("connection").is_none());
}
