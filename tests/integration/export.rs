//! `cpi export` round trip: rows created behind cpi's back become manifests
//! that `cpi diff --adopt` finds equal but for ownership.

use std::path::{Path, PathBuf};

use crate::support::fs::{manifest, mode, tree};
use crate::support::{write, Cpi, Run, TestDb};

const PASSWORD: &str = "Exp0rt-s3cret!pw";

/// A config with every key set, `settle_seconds` an integer: each must
/// export and load back to the very JSON stored.
const EVERY_KEY: &str = r#"{"name": "p3", "inbox": "/srv/in/p3", "processed_dir": "/srv/done/p3",
  "failed_dir": "/srv/failed/p3", "settle_seconds": 2,
  "defaults": {"file_pattern": "*.csv", "table": "public.t", "primary_key": "id", "mode": "upsert",
    "create_table": true, "columns": {"Order ID": "order_id"}, "header": true, "delimiter": ";",
    "quote": "'", "escape": "\\", "null": ["", "NULL"], "trim": false, "encoding": "latin1",
    "on_error": "skip_rows", "max_errors": 10, "extra_columns": "ignore", "missing_columns": "error"},
  "tables": [{"file_pattern": "o_*.csv", "table": "sales.orders", "primary_key": ["a", "b"],
    "mode": "sync", "create_table": false, "columns": {"x": "y"}, "header": false, "delimiter": "|",
    "quote": "\"", "escape": "\"", "null": "-", "trim": true, "encoding": "windows-1252",
    "on_error": "skip_rows", "max_errors": 0, "extra_columns": "error", "missing_columns": "ignore"},
    {"file_pattern": "slow_*.csv", "mode": "append", "on_error": "abort"}]}"#;

/// One `cpi export` into an empty folder; the folder lives as long as this.
struct Export {
    _dir: tempfile::TempDir,
    out: PathBuf,
    secrets: PathBuf,
    run: Run,
}

impl Export {
    fn of(db: &TestDb) -> Export {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let secrets = dir.path().join("secrets");
        let run = Cpi::new([
            "export",
            "--dir",
            path(&out),
            "--secrets-out",
            path(&secrets),
        ])
        .db(db)
        .run();
        Export {
            _dir: dir,
            out,
            secrets,
            run,
        }
    }

    /// The exported folder as `--manifests` with its `--secrets-dir`.
    fn manifests(&self) -> [&str; 4] {
        [
            "--manifests",
            path(&self.out),
            "--secrets-dir",
            path(&self.secrets),
        ]
    }

    /// The exported folder validates, `cpi diff --adopt` finds `changes`
    /// rows that differ in ownership only, and once adopted `cpi diff` is
    /// clean; no output holds any of `hidden`.
    fn adopts_clean(&self, db: &TestDb, changes: usize, hidden: &[&str]) {
        let m = self.manifests();
        Cpi::new(["validate"]).args(m).run().assert_code(0);
        let d = Cpi::new(["diff", "--adopt", "--output", "json"])
            .args(m)
            .db(db)
            .run();
        assert_eq!(d.code, 2, "{}", d.all());
        d.assert_hides("cpi diff --adopt", hidden);
        let plan: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
        let found = plan["changes"].as_array().unwrap();
        assert_eq!(found.len(), changes, "{}", d.stdout);
        for c in found {
            assert_eq!(
                c["fields"],
                serde_json::json!(["managed_by", "source"]),
                "only ownership changes: {c}"
            );
        }
        Cpi::new(["apply", "--adopt"])
            .args(m)
            .db(db)
            .run()
            .assert_code(0);
        let d = Cpi::new(["diff"]).args(m).db(db).run();
        assert_eq!(d.code, 0, "{}", d.all());
        d.assert_hides("cpi diff", hidden);
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// As if the `cpi_objects` rows came from another install: nobody's yet.
async fn disown_objects(db: &TestDb) {
    sqlx::query("UPDATE cpi_objects SET managed_by = NULL, source = NULL, applied_digest = NULL")
        .execute(&db.pool().await)
        .await
        .unwrap();
}

#[tokio::test]
async fn export_then_adopt_then_diff_is_clean() {
    let db = TestDb::new().await;
    assert_eq!(Cpi::new(["migrate"]).db(&db).run().code, 0);
    let mut conn = db.connect().await;
    let with_password = format!("postgresql://importer:{PASSWORD}@db.internal:5432/abc");
    sqlx::query("INSERT INTO cpi_connections (name, description, database_url) VALUES ('abc', 'ABC prod', $1), ('plain', NULL, 'postgresql://reader@10.0.0.5/warehouse'), ('tokened', NULL, 'postgresql://u@h/db?sslmode=require&password=qp-secret')")
        .bind(&with_password)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO cpi_projects (name, description, connection_id, config)
         SELECT 'p1', 'nightly', id, '{\"name\": \"p1\", \"inbox\": \"/srv/in/p1\", \"defaults\": {\"primary_key\": \"id\"}, \"tables\": [{\"file_pattern\": \"o_*.csv\", \"table\": \"sales.orders\", \"mode\": \"upsert\", \"primary_key\": [\"order_id\"]}]}'::jsonb FROM cpi_connections WHERE name = 'abc'
         UNION ALL SELECT 'p2', NULL, id, '{\"name\": \"p2\", \"inbox\": \"/srv/in/p2\"}'::jsonb FROM cpi_connections WHERE name = 'plain'
         UNION ALL SELECT 'p3', NULL, id, $1::jsonb FROM cpi_connections WHERE name = 'plain'
         UNION ALL SELECT 'orphan', NULL, NULL, '{\"inbox\": \"/srv/in/x\"}'::jsonb",
    )
    .bind(EVERY_KEY)
    .execute(&mut conn)
    .await
    .unwrap();

    let export = Export::of(&db);
    let (e, out, secrets) = (&export.run, &export.out, &export.secrets);
    assert_eq!(e.code, 0, "{}", e.all());
    assert!(!e.all().contains(PASSWORD) && !e.all().contains("qp-secret"));
    assert!(
        e.stderr.contains("\"orphan\"") && e.stderr.contains("connection_id is NULL"),
        "{}",
        e.stderr
    );

    // Git gets no secret; the secret files are the owner's only.
    let abc = std::fs::read_to_string(out.join("connections/abc.yaml")).unwrap();
    assert!(!abc.contains(PASSWORD), "{abc}");
    assert!(abc.contains("password_file: abc.pass"), "{abc}");
    assert!(
        !std::fs::read_to_string(out.join("connections/tokened.yaml"))
            .unwrap()
            .contains("qp-secret")
    );
    assert!(!out.join("projects/orphan.yaml").exists());
    assert!(!secrets.join("plain.pass").exists());
    for f in ["abc.pass", "tokened.url"] {
        assert_eq!(mode(&secrets.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(secrets), 0o700);

    let m = export.manifests();
    let d = Cpi::new(["diff"]).args(m).db(&db).run();
    assert_eq!(d.code, 1, "unmanaged rows are conflicts: {}", d.all());

    let d = Cpi::new(["diff", "--adopt", "--output", "json"])
        .args(m)
        .db(&db)
        .run();
    assert_eq!(d.code, 2, "{}", d.all());
    assert!(!d.all().contains(PASSWORD));
    let plan: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 6, "{}", d.stdout);
    for c in changes {
        assert_eq!(c["action"], "update", "{c}");
        assert_eq!(c["adopt"], true, "{c}");
        assert_eq!(
            c["fields"],
            serde_json::json!(["managed_by", "source"]),
            "only ownership changes: {c}"
        );
    }

    let a = Cpi::new(["apply", "--adopt"]).args(m).db(&db).run();
    assert_eq!(a.code, 0, "{}", a.all());
    let d = Cpi::new(["diff"]).args(m).db(&db).run();
    assert_eq!(d.code, 0, "{}", d.all());
    assert!(!a.all().contains(PASSWORD) && !d.all().contains(PASSWORD));

    // The stored URL was never rewritten: it loaded back byte for byte.
    let (url,): (String,) =
        sqlx::query_as("SELECT database_url FROM cpi_connections WHERE name = 'abc'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(url, with_password);
    // Nor was any config: every key, numbers included, came back as stored.
    let (same,): (bool,) = sqlx::query_as(
        "SELECT config = $1::jsonb AND config->'settle_seconds' = '2'::jsonb FROM cpi_projects WHERE name = 'p3'",
    )
    .bind(EVERY_KEY)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(same, "the stored config of p3 changed");

    // A second export does not overwrite what the first wrote (given by
    // `--output`, the old name of `--dir`, kept as an alias for one release).
    let again = Cpi::new([
        "export",
        "--output",
        path(out),
        "--secrets-out",
        path(secrets),
    ])
    .db(&db)
    .run();
    again.assert_code(1).assert_stderr("--force");
}

#[tokio::test]
async fn export_on_an_unmigrated_database_says_so() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("o");
    let r = Cpi::new([
        "export",
        "--output",
        o.to_str().unwrap(),
        "--secrets-out",
        o.join("s").to_str().unwrap(),
    ])
    .db(&db)
    .run();
    r.assert_code(1).assert_stderr("cpi migrate");
}

/// The `cpi_objects` kinds (Provider, Alert, Receiver) are exported as
/// they are stored: secrets stay `*_file` paths, their contents appear
/// nowhere; the folder validates, and once adopted `cpi diff` is clean.
#[tokio::test]
async fn notification_objects_export_with_their_file_paths_and_diff_clean() {
    use crate::notify::{folder, KEY_SECRET, SMTP_SECRET, URL_SECRET};
    let db = TestDb::new().await;
    let src = tempfile::tempdir().unwrap();
    folder(src.path());
    let from = src.path().to_str().unwrap();
    Cpi::new(["apply", "--manifests", from])
        .db(&db)
        .run()
        .assert_code(0);
    disown_objects(&db).await;

    let export = Export::of(&db);
    let (e, out, secrets) = (&export.run, &export.out, &export.secrets);
    e.assert_code(0)
        .assert_hides("cpi export", &[URL_SECRET, KEY_SECRET, SMTP_SECRET]);
    let mut written = Vec::new();
    for (sub, name) in [
        ("providers", "ops"),
        ("providers", "mail"),
        ("alerts", "failures"),
        ("receivers", "gh"),
    ] {
        let text = std::fs::read_to_string(out.join(sub).join(format!("{name}.yaml")))
            .unwrap_or_else(|err| panic!("{sub}/{name}.yaml: {err}\n{}", e.all()));
        written.push(text);
    }
    let all = written.join("\n");
    for secret in [URL_SECRET, KEY_SECRET, SMTP_SECRET] {
        assert!(!all.contains(secret), "{secret} exported: {all}");
    }
    // The secret files are named by the paths the rows hold (absolute).
    let ops_url = src.path().join("ops.url");
    assert!(
        written[0].contains(&format!("url_file: {}", ops_url.display())),
        "{}",
        written[0]
    );
    assert!(written[1].contains("password_file: "), "{}", written[1]);
    // Nothing is written beside them: the rows held no secret to write.
    assert!(std::fs::read_dir(secrets).map_or(true, |d| d.count() == 0));

    export.adopts_clean(&db, 4, &[URL_SECRET, KEY_SECRET, SMTP_SECRET]);
}

/// ApiToken and RoleBinding rows export as the generic `cpi_objects` kinds
/// do: the token's SHA-256 as the manifest gave it and nothing more. The
/// token itself, planted in a file beside the manifests the way a client
/// keeps it, is in no exported file and no output.
#[tokio::test]
async fn access_objects_export_without_their_token_and_diff_clean() {
    let db = TestDb::new().await;
    let src = tempfile::tempdir().unwrap();
    let (created, token) = crate::access::create_ci_token();
    let hash = cpi::access::token::sha256_hex(&token);
    write(src.path(), "access/ci.yaml", &created.stdout);
    write(src.path(), "ci.token", &format!("{token}\n"));
    write(
        src.path(),
        "access/ops.yaml",
        &manifest(
            "RoleBinding",
            "ops",
            "role: operator\nprojects: ['sales-*', billing]\nsubjects: [{token: ci}, {group: team-ops}, {user: ann@example.com}]\n",
        ),
    );
    Cpi::new(["apply"])
        .db(&db)
        .manifests(src.path())
        .run()
        .assert_code(0);
    disown_objects(&db).await;

    let export = Export::of(&db);
    export
        .run
        .assert_code(0)
        .assert_hides("cpi export", &[&token]);
    assert_eq!(
        tree(&export.out),
        ["apitokens/ci.yaml", "rolebindings/ops.yaml"],
        "{}",
        export.run.all()
    );
    assert!(std::fs::read_dir(&export.secrets).map_or(true, |d| d.count() == 0));
    let ci = std::fs::read_to_string(export.out.join("apitokens/ci.yaml")).unwrap();
    let ops = std::fs::read_to_string(export.out.join("rolebindings/ops.yaml")).unwrap();
    for text in [&ci, &ops] {
        assert!(!text.contains(&token), "the token exported: {text}");
        // The only 64-hex-digit word anywhere is the hash the manifest had.
        let hex: Vec<&str> = text
            .split(|c: char| !c.is_ascii_hexdigit())
            .filter(|w| w.len() >= 64)
            .collect();
        let expected: &[&str] = if text == &ci { &[&hash] } else { &[] };
        assert_eq!(hex, expected, "{text}");
    }
    assert!(ci.contains(&format!("sha256: {hash}")), "{ci}");
    assert!(
        ops.contains("team-ops") && ops.contains("ann@example.com"),
        "{ops}"
    );

    export.adopts_clean(&db, 2, &[&token]);
}
