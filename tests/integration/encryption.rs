//! Connection URLs encrypted at rest: with a key no password and no URL is
//! in the management database (pg_dump), every place that uses the URL
//! still sees it, rows written before the key are encrypted by the next
//! apply, rotation with `cpi rekey` works, and without the key only what
//! needs a URL fails, naming the flag.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

use crate::support::fs::manifest;
use crate::support::{write, Cpi, Run, TestDb};

const PASSWORD: &str = "Enc-Canary-Pw-5150";

fn keygen(path: &Path) -> Run {
    Cpi::new(["keygen", "--file"]).args([path]).run()
}

#[tokio::test]
async fn keygen_writes_0600_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("k");
    let r = keygen(&k);
    assert_eq!(r.code, 0, "{}", r.all());
    let mode = std::fs::metadata(&k).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&k).unwrap();
    let key_line = text.lines().find(|l| !l.starts_with('#')).unwrap();
    assert!(!r.all().contains(key_line.split(':').nth(1).unwrap()));
    let again = keygen(&k);
    assert_eq!(again.code, 1, "{}", again.all());
    assert_eq!(std::fs::read_to_string(&k).unwrap(), text, "left as it was");
    // The deploy kit passes the flag to `cpi run` and `cpi serve`: a
    // global option, listed in `cpi --help`.
    let h = Cpi::new(["--help"]).run();
    assert!(h.stdout.contains("--encryption-key-file"), "{}", h.stdout);
    for cmd in ["run", "serve"] {
        let h = Cpi::new([cmd, "--help"]).run();
        assert!(h.stdout.contains("see `cpi --help`"), "{cmd}: {}", h.stdout);
    }
}

struct Env {
    db: TestDb,
    dir: tempfile::TempDir,
    url: String,
}

impl Env {
    fn m(&self) -> std::path::PathBuf {
        self.dir.path().join("m")
    }

    /// `cpi ARGS` on the management DB and manifests, with `key` if any.
    /// The URL `cpi connections show NAME --show-secrets` shows with `key`
    /// (as JSON); the command must succeed.
    fn shown_url(&self, name: &str, key: &Path) -> serde_json::Value {
        let r = self.cpi(
            &[
                "connections",
                "show",
                name,
                "--show-secrets",
                "--output",
                "json",
            ],
            Some(key),
        );
        assert_eq!(r.code, 0, "{}", r.all());
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["database_url"].clone()
    }

    fn cpi(&self, args: &[&str], key: Option<&Path>) -> Run {
        let mut c = Cpi::new(args).db(&self.db).manifests(self.m());
        if let Some(k) = key {
            c = c.args([std::ffi::OsStr::new("--encryption-key-file"), k.as_os_str()]);
        }
        c.run()
    }

    async fn stored(&self) -> Vec<String> {
        let pool = self.db.pool().await;
        sqlx::query_scalar("SELECT database_url FROM cpi_connections ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap()
    }
}

/// Two connections to the test database (the local server trusts
/// 127.0.0.1, so the planted password is carried, never checked), a
/// project importing into table `t`.
async fn env() -> Env {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let url = db
        .url()
        .replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1);
    let m = dir.path().join("m");
    write(&m, "a.url", &format!("{url}\n"));
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    write(
        &m,
        "c.yaml",
        &format!(
            "{}---\n{}",
            manifest("Connection", "a", "database_url_file: a.url"),
            manifest(
                "Connection",
                "b",
                "database_url_file: a.url\ndescription: second"
            )
        ),
    );
    write(
        &m,
        "p.yaml",
        &crate::support::manifests::project("p", "a", &inbox, "{table: t, mode: append}"),
    );
    let pool = db.pool().await;
    sqlx::query("CREATE TABLE t (id int)")
        .execute(&pool)
        .await
        .unwrap();
    Env { db, dir, url }
}

fn pg_dump(url: &str) -> String {
    let out = crate::support::bin::succeed(
        "pg_dump",
        std::process::Command::new("pg_dump").args([
            "--data-only",
            "--table",
            "cpi_connections",
            url,
        ]),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn with_a_key_the_dump_holds_no_url_and_users_still_see_it() {
    let e = env().await;
    let key = e.dir.path().join("key");
    assert_eq!(keygen(&key).code, 0);

    // Rows written before the key existed: plain text ...
    let a = e.cpi(&["apply"], None);
    assert_eq!(a.code, 0, "{}", a.all());
    assert!(e.stored().await.iter().all(|s| s == &e.url));
    // ... encrypted by the next apply, which is no change to the plan.
    let d = e.cpi(&["diff"], Some(&key));
    assert_eq!(d.code, 0, "re-encryption is not a change: {}", d.all());
    let a = e.cpi(&["apply"], Some(&key));
    assert_eq!(a.code, 0, "{}", a.all());
    for s in e.stored().await {
        assert!(s.starts_with("cpi:v1:k"), "{s}");
    }
    let d = e.cpi(&["diff"], Some(&key));
    assert_eq!(d.code, 0, "{}", d.all());

    let dump = pg_dump(&e.db.url());
    assert!(dump.contains("cpi:v1:"), "the dump has the rows");
    for needle in [PASSWORD, e.url.as_str(), "postgresql://", "postgres://"] {
        assert!(!dump.contains(needle), "pg_dump holds {needle:?}");
    }

    // Where the URL is used, it is the real one.
    assert_eq!(e.shown_url("a", &key), json!(e.url));
    let r = e.cpi(&["connections", "test", "a"], Some(&key));
    assert_eq!(r.code, 0, "{}", r.all());
    let csv = write(&e.dir.path().join("inbox"), "x.csv", "id\n1\n2\n");
    let r = e.cpi(
        &["import", "--project", "p", csv.to_str().unwrap()],
        Some(&key),
    );
    r.assert_code(0).assert_stdout("succeeded");

    // `cpi export` writes the real secrets, never an envelope.
    let out = e.dir.path().join("export");
    let r = e.cpi(
        &[
            "export",
            "--output",
            out.join("m").to_str().unwrap(),
            "--secrets-out",
            out.join("s").to_str().unwrap(),
        ],
        Some(&key),
    );
    assert_eq!(r.code, 0, "{}", r.all());
    let secrets: Vec<String> = std::fs::read_dir(out.join("s"))
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    assert!(secrets.iter().any(|t| t.contains(PASSWORD)), "{secrets:?}");
    assert!(
        secrets.iter().all(|t| !t.contains("cpi:v1:")),
        "{secrets:?}"
    );

    // Without the key: lists and diffs work, what needs the URL names the flag.
    for args in [
        vec!["connections", "list"],
        vec!["connections", "show", "a"],
        vec!["projects", "list"],
    ] {
        let r = e.cpi(&args, None);
        assert_eq!(r.code, 0, "{args:?}: {}", r.all());
        assert!(!r.all().contains(PASSWORD));
    }
    let d = e.cpi(&["diff"], None);
    assert_eq!(d.code, 0, "{}", d.all());
    for args in [
        vec!["connections", "show", "a", "--show-secrets"],
        vec!["connections", "test", "a"],
    ] {
        let r = e.cpi(&args, None);
        assert_eq!(r.code, 1, "{args:?}: {}", r.all());
        assert!(
            r.stderr.contains("--encryption-key-file"),
            "{args:?}: {}",
            r.stderr
        );
    }
    let r = e.cpi(&["import", "--project", "p", csv.to_str().unwrap()], None);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.all().contains("--encryption-key-file"), "{}", r.all());
    // A change of another field shows in the diff; applying it without the
    // key is refused (it would write plain text beside encrypted rows).
    let c = std::fs::read_to_string(e.m().join("c.yaml")).unwrap();
    write(
        &e.m(),
        "c.yaml",
        &c.replace("description: second", "description: third"),
    );
    let d = e.cpi(&["diff"], None);
    d.assert_code(2).assert_stdout("third");
    let a = e.cpi(&["apply"], None);
    a.assert_code(1).assert_stderr("--encryption-key-file");
    assert!(e.stored().await.iter().all(|s| s.starts_with("cpi:v1:")));
}

#[tokio::test]
async fn rotation_with_two_keys_and_rekey() {
    let e = env().await;
    let dir = e.dir.path();
    let (old, new, both) = (dir.join("old"), dir.join("new"), dir.join("both"));
    assert_eq!(keygen(&old).code, 0);
    assert_eq!(keygen(&new).code, 0);
    let a = e.cpi(&["apply"], Some(&old));
    assert_eq!(a.code, 0, "{}", a.all());
    // The new key first: it encrypts, both decrypt.
    let text = format!(
        "{}{}",
        std::fs::read_to_string(&new).unwrap(),
        std::fs::read_to_string(&old).unwrap()
    );
    std::fs::write(&both, text).unwrap();
    std::fs::set_permissions(&both, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = e.cpi(&["connections", "show", "b", "--show-secrets"], Some(&both));
    assert_eq!(r.code, 0, "{}", r.all());
    let r = e.cpi(&["rekey"], Some(&both));
    r.assert_code(0).assert_stdout("re-encrypted 2 of 2");
    for name in ["a", "b"] {
        assert_eq!(e.shown_url(name, &new), json!(e.url));
        let r = e.cpi(&["connections", "show", name, "--show-secrets"], Some(&old));
        assert_eq!(
            r.code,
            1,
            "the old key alone no longer reads it: {}",
            r.all()
        );
    }
    let r = e.cpi(&["rekey"], Some(&new));
    assert!(r.stdout.contains("re-encrypted 0 of 2"), "{}", r.stdout);
    let r = e.cpi(&["rekey"], None);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--encryption-key-file"), "{}", r.stderr);
}

#[tokio::test]
async fn api_detail_sees_the_url_and_the_row_is_encrypted() {
    // The key ring is process-wide; nextest runs each test in its own process.
    let ring = cpi::crypto::Keyring::parse(&cpi::crypto::generate(), "test").unwrap();
    cpi::crypto::install(ring);
    let s = crate::support::api::Server::start().await;
    let url = format!("postgresql://u:{PASSWORD}@127.0.0.1:1/x");
    let r = s
        .post("/connections", json!({"name": "c", "database_url": url}))
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_string();
    let stored: String = sqlx::query_scalar("SELECT database_url FROM cpi_connections")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert!(
        stored.starts_with("cpi:v1:") && !stored.contains(PASSWORD),
        "{stored}"
    );
    let r = s.get(&format!("/connections/{id}")).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(r.json["database_url"], json!(url));
    // A description-only update keeps the URL (decrypted, encrypted again).
    let r = s
        .put(&format!("/connections/{id}"), json!({"description": "d"}))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    let r = s.get(&format!("/connections/{id}")).await;
    assert_eq!(r.json["database_url"], json!(url));
    s.stop().await;
}

/// The digest kept beside a sealed URL (for drift) is over the sealed text:
/// it says nothing about the password, so a backup does not let anyone test
/// password guesses offline. A re-encryption is not drift; a hand edit of
/// the stored URL is, with or without the key.
#[tokio::test]
async fn the_digest_beside_a_sealed_url_tells_nothing_and_rekey_is_not_drift() {
    let e1 = env().await;
    let key = e1.dir.path().join("k");
    assert_eq!(keygen(&key).code, 0);
    let new = e1.dir.path().join("new");
    assert_eq!(keygen(&new).code, 0);
    let pool = e1.db.pool().await;
    let digests = || async {
        let v: Vec<(String, Option<String>, String)> = sqlx::query_as(
            "SELECT name, description, applied_digest FROM cpi_connections ORDER BY name",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        v
    };
    // What a backup holder could test guesses against: the digest of the
    // plain row. Without a key the URL is in the row anyway...
    let a = e1.cpi(&["apply"], None);
    assert_eq!(a.code, 0, "{}", a.all());
    let plain_guess = |name: &str, desc: &Option<String>| {
        cpi::plan::connection_digest(name, desc.as_deref(), &e1.url)
    };
    for (name, desc, d) in digests().await {
        assert_eq!(d, plain_guess(&name, &desc));
    }
    // ...with the key the digest no longer matches a right guess.
    let a = e1.cpi(&["apply"], Some(&key));
    assert_eq!(a.code, 0, "{}", a.all());
    assert!(e1.stored().await.iter().all(|u| u.starts_with("cpi:v1:")));
    for (name, desc, d) in digests().await {
        assert_ne!(d, plain_guess(&name, &desc), "{name}");
    }

    // A rekey (new key first, old key second) is not drift.
    let both = e1.dir.path().join("both");
    let text = std::fs::read_to_string(&new).unwrap() + &std::fs::read_to_string(&key).unwrap();
    std::fs::write(&both, text).unwrap();
    std::fs::set_permissions(&both, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = e1.cpi(&["rekey"], Some(&both));
    assert!(r.stdout.contains("re-encrypted 2 of 2"), "{}", r.all());
    write(
        &e1.m(),
        "a.url",
        &format!("{}?application_name=x\n", e1.url),
    );
    let d = e1.cpi(&["diff"], Some(&new));
    assert_eq!(d.code, 2, "{}", d.all());
    assert!(
        !d.stdout.contains("drift"),
        "a rekey is not drift: {}",
        d.stdout
    );

    // A hand edit of a stored URL is drift, and is seen without the key.
    sqlx::query(
        "UPDATE cpi_connections SET database_url = 'postgresql://u@elsewhere/db' WHERE name = 'a'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let d = e1.cpi(&["diff"], None);
    assert!(
        d.stdout.contains("Connection a") && d.stdout.contains("drift"),
        "{}",
        d.all()
    );
    assert!(!d.all().contains(PASSWORD));
}
