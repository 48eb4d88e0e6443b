//! A real password planted in secret files must never reach stdout or
//! stderr, whatever the command and whatever goes wrong.

use crate::support::{admin_url, cpi, write, Cpi, TestDb};

/// Characters that change under percent-encoding, so both forms are checked.
const PASSWORD: &str = "Sup3r:S3cret/Pw@x!";
const ENCODED: &str = "Sup3r%3AS3cret%2FPw%40x!";
/// Planted in a TLS client key file that a connection's URL names.
const TLS_KEY: &str = "TlsKeyCanary7731";
/// The encryption key given with --encryption-key-file (32 bytes, base64).
const ENC_KEY: &str = "RW5jS2V5Q2FuYXJ5LTAxMjM0NTY3ODlhYmNkZWZYWVo=";

/// What must never appear in any output: both forms, a telling part, the
/// planted TLS key and the encryption key.
const SECRETS: [&str; 6] = [
    PASSWORD,
    ENCODED,
    "S3cret",
    TLS_KEY,
    ENC_KEY,
    "EncKeyCanary",
];

#[tokio::test]
async fn password_appears_in_no_output() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("manifests");
    // One connection to this very server, as a role whose password is the
    // planted one (so it connects whether the server trusts 127.0.0.1 or
    // checks passwords, as the embedded test server does), one to a port
    // where nothing listens.
    let role = format!("{}_planted", db.name);
    let mut admin = db.connect().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD '{}'",
        PASSWORD.replace('\'', "''")
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let server = url::Url::parse(&admin_url()).unwrap();
    write(&m, "c.yaml", &format!(
        "apiVersion: cpi/v1\nkind: Connection\nmetadata: {{name: ok}}\nspec:\n  database_url: postgresql://{role}@{}:{}/{}\n  password_file: ok.pass\n---\napiVersion: cpi/v1\nkind: Connection\nmetadata: {{name: down}}\nspec:\n  description: nothing listens here\n  database_url_file: down.url\n",
        server.host_str().unwrap(),
        server.port().unwrap_or(5432),
        db.name
    ));
    write(&m, "ok.pass", &format!("{PASSWORD}\n"));
    write(
        &m,
        "down.url",
        &format!("postgresql://importer:{ENCODED}@127.0.0.1:1/abc?sslmode=disable\n"),
    );
    // A connection whose client key (a secret file, resolved under the
    // secrets folder) holds a planted value; the driver reads and rejects it.
    write(&m, "c-tls.yaml", "apiVersion: cpi/v1\nkind: Connection\nmetadata: {name: tlskey}\nspec:\n  database_url_file: tlskey.url\n");
    write(
        &m,
        "tlskey.url",
        &format!("postgresql://importer:{ENCODED}@127.0.0.1:5432/x?sslmode=require&sslcert=client.crt&sslkey=client.key\n"),
    );
    write(
        &m,
        "client.crt",
        &format!("-----BEGIN CERTIFICATE-----\n{TLS_KEY}\n-----END CERTIFICATE-----\n"),
    );
    write(
        &m,
        "client.key",
        &format!("-----BEGIN PRIVATE KEY-----\n{TLS_KEY}\n-----END PRIVATE KEY-----\n"),
    );
    // Every command runs with an encryption key: URLs are stored encrypted.
    let key_file = write(dir.path(), "enc.key", &format!("k1:{ENC_KEY}\n"));
    write(&m, "p.yaml", "apiVersion: cpi/v1\nkind: Project\nmetadata: {name: p}\nspec:\n  connection: down\n  config: {inbox: /tmp/in}\n");
    let url = db.url();
    let ms = m.to_str().unwrap();
    let with = |args: &[&str]| {
        Cpi::new(args)
            .database_url(&url)
            .manifests(&m)
            .args(["--encryption-key-file", key_file.to_str().unwrap()])
            .run()
    };

    let r = with(&["validate"]);
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_hides("validate", &SECRETS);
    let r = with(&["diff"]);
    assert_eq!(r.code, 2);
    r.assert_hides("diff", &SECRETS);
    let r = with(&["diff", "--output", "json"]);
    r.assert_hides("diff --output json", &SECRETS);
    let r = with(&["apply"]);
    assert_eq!(r.code, 0, "{}", r.all());
    r.assert_hides("apply", &SECRETS);

    // A password change is described, never shown.
    write(&m, "ok.pass", &format!("{PASSWORD}2\n"));
    let r = with(&["diff"]);
    assert!(r.stdout.contains("(secret changed)"), "{}", r.stdout);
    r.assert_hides("diff of a password change", &SECRETS);
    write(&m, "ok.pass", &format!("{PASSWORD}\n"));

    for args in [
        vec!["connections", "list"],
        vec!["connections", "list", "--output", "json"],
        vec!["connections", "show", "down"],
        vec!["connections", "show", "ok", "--output", "json"],
        vec!["projects", "list"],
        vec!["projects", "show", "p"],
    ] {
        let r = with(&args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.all());
        r.assert_hides(&format!("{args:?}"), &SECRETS);
    }
    let listed = with(&["connections", "list"]);
    assert!(
        !listed.stdout.contains("postgresql://"),
        "list never shows a URL: {}",
        listed.stdout
    );

    let r = with(&["connections", "test", "ok"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"success": true, "message": "Connection successful"})
    );
    let r = with(&["connections", "test", "down", "--timeout", "3"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains(r#""success":false"#), "{}", r.stdout);
    r.assert_hides("connections test (failing)", &SECRETS);
    let r = with(&["connections", "test", "tlskey", "--timeout", "5"]);
    assert_eq!(r.code, 1, "{}", r.all());
    r.assert_hides("connections test with a planted TLS key", &SECRETS);
    let stored: Vec<(String,)> = sqlx::query_as("SELECT database_url FROM cpi_connections")
        .fetch_all(&mut db.connect().await)
        .await
        .unwrap();
    assert!(
        stored.iter().all(|(u,)| u.starts_with("cpi:v1:k1:")),
        "{stored:?}"
    );

    // The audit trail stores the redacted diff only.
    let mut conn = db.connect().await;
    let diffs: Vec<(String,)> = sqlx::query_as("SELECT diff FROM cpi_reconcile_runs")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(!diffs.is_empty());
    for (d,) in diffs {
        assert!(
            !d.contains(PASSWORD) && !d.contains(ENCODED) && !d.contains("S3cret"),
            "{d}"
        );
    }

    // A broken manifest next to the secrets: the error names the file, not the secret.
    write(&m, "broken.yaml", "apiVersion: cpi/v1\nkind: Connection\nmetadata: {name: broken}\nspec:\n  database_url_file: ok.pass\n");
    let r = with(&["apply"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("broken.yaml"), "{}", r.stderr);
    r.assert_hides("apply of a broken manifest", &SECRETS);
    std::fs::remove_file(m.join("broken.yaml")).unwrap();

    // A password typed inline in git is rejected without being echoed.
    write(&m, "inline.yaml", &format!("apiVersion: cpi/v1\nkind: Connection\nmetadata: {{name: inline}}\nspec:\n  database_url: postgresql://u:{ENCODED}@h/db\n"));
    let r = with(&["validate"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("inline.yaml:5: database_url contains a password"),
        "{}",
        r.stderr
    );
    r.assert_hides("validate of an inline password", &SECRETS);
    std::fs::remove_file(m.join("inline.yaml")).unwrap();

    // A management URL with a password that cannot connect.
    let r = cpi(&[
        "diff",
        "--manifests",
        ms,
        "--database-url",
        &format!("postgresql://postgres:{ENCODED}@127.0.0.1:1/x"),
    ]);
    assert_eq!(r.code, 1);
    r.assert_hides("diff with an unreachable management database", &SECRETS);

    // The check itself can fail: --show-secrets does print the URL.
    let r = with(&["connections", "show", "down", "--show-secrets"]);
    assert!(r.stdout.contains(ENCODED), "{}", r.stdout);

    // Roles belong to the server, not to the test database.
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE \"{role}\"")))
        .execute(&mut admin)
        .await
        .unwrap();
}
