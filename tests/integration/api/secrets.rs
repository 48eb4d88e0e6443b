//! No database_url, no password and no token in any list response or in
//! any line the real `cpi serve` logs, even at trace level.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{cpi_command, TestDb};

const PASSWORD: &str = "Pw-Leak-Canary-8841";
const TOKEN: &str = "Tok-Leak-Canary-2207";
/// Planted in a TLS client key file that a connection's URL names.
const TLS_KEY: &str = "TlsKey-Leak-Canary-3319";
/// The --encryption-key-file key: base64 of "EncKeyCanary-0123456789abcdefXYZ".
const ENC_KEY: &str = "RW5jS2V5Q2FuYXJ5LTAxMjM0NTY3ODlhYmNkZWZYWVo=";

#[tokio::test]
async fn no_secret_in_list_responses_or_logs() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let key_file = dir.path().join("enc.key");
    std::fs::write(&key_file, format!("k1:{ENC_KEY}\n")).unwrap();
    for f in ["client.crt", "client.key"] {
        std::fs::write(
            dir.path().join(f),
            format!("-----BEGIN PRIVATE KEY-----\n{TLS_KEY}\n-----END PRIVATE KEY-----\n"),
        )
        .unwrap();
    }

    let mut child = cpi_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--api-token-file")
        .arg(&token_file)
        // Reads without the token stay open (and redacted) only when asked:
        // with a token configured the default is --anonymous none.
        .args(["--anonymous", "viewer"])
        .arg("--encryption-key-file")
        .arg(&key_file)
        .arg("--database-url")
        .arg(db.url())
        .env("CPI_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let line = line.unwrap();
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["fields"]["message"] == "API listening" {
                        let _ = addr_tx.send(v["fields"]["addr"].as_str().unwrap().to_string());
                    }
                }
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        })
    };
    let addr = match addr_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            panic!("cpi serve did not start:\n{}", log.lock().unwrap());
        }
    };
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let auth = format!("Bearer {TOKEN}");

    // A reachable connection (trust auth ignores the password), an
    // unreachable one, and a project using the first.
    let good_url = db
        .url()
        .replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1);
    let bad_url = format!("postgresql://bob:{PASSWORD}@127.0.0.1:1/x?sslmode=disable");
    let tls_url = format!(
        "postgresql://bob:{PASSWORD}@127.0.0.1:5432/x?sslmode=require&sslcert={}&sslkey={}",
        dir.path().join("client.crt").display(),
        dir.path().join("client.key").display()
    );
    let mut ids = Vec::new();
    for (name, url) in [("good", &good_url), ("bad", &bad_url), ("tls", &tls_url)] {
        let r = client
            .post(format!("{base}/connections"))
            .header("Authorization", &auth)
            .json(&json!({"name": name, "database_url": url}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let body = r.text().await.unwrap();
        assert!(
            !body.contains(PASSWORD) && !body.contains("database_url"),
            "{body}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let r = client
        .post(format!("{base}/projects"))
        .header("Authorization", &auth)
        .json(&json!({"name": "p", "connection_id": ids[0], "config": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Errors that could echo a URL: a duplicate, a bad scheme, a test failure,
    // a wrong token.
    let mut error_bodies = Vec::new();
    for body in [
        json!({"name": "good", "database_url": good_url}),
        json!({"name": "x", "database_url": format!("mysql://bob:{PASSWORD}@h/x")}),
        json!({"name": "x", "database_url": format!("postgresql://bob:{PASSWORD}@h:99999999/x")}),
        json!({"name": 1, "database_url": good_url}),
    ] {
        let r = client
            .post(format!("{base}/connections"))
            .header("Authorization", &auth)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
        error_bodies.push(r.text().await.unwrap());
    }
    for id in &ids {
        let r = client
            .post(format!("{base}/connections/{id}/test"))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        error_bodies.push(r.text().await.unwrap());
    }
    let r = client
        .post(format!("{base}/connections"))
        .header("Authorization", format!("Bearer {TOKEN}x"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    error_bodies.push(r.text().await.unwrap());
    for body in &error_bodies {
        assert!(!body.contains(TLS_KEY) && !body.contains(ENC_KEY), "{body}");
        assert!(!body.contains(PASSWORD), "{body}");
        assert!(!body.contains(TOKEN), "{body}");
    }
    assert!(
        error_bodies[4].contains("\"success\":true"),
        "{}",
        error_bodies[4]
    );
    assert!(
        error_bodies[5].contains("\"success\":false"),
        "{}",
        error_bodies[5]
    );

    // Every list and the other open endpoints.
    for path in [
        "/connections",
        "/projects",
        "/jobs",
        "/metrics",
        "/readyz",
        "/healthz",
        "/openapi.json",
    ] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let body = r.text().await.unwrap();
        assert!(!body.contains(PASSWORD), "{path}: {body}");
        assert!(!body.contains(TOKEN), "{path}: {body}");
        assert!(!body.contains("127.0.0.1:1/"), "{path}: {body}");
        if path != "/openapi.json" {
            assert!(!body.contains("database_url"), "{path}: {body}");
        }
    }
    // The detail view does show the URL, to the token holder.
    let r = client
        .get(format!("{base}/connections/{}", ids[0]))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains(PASSWORD));

    // SIGTERM: a graceful stop, logged.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    reader.join().unwrap();
    assert!(exit.success(), "{exit:?}");
    let log = log.lock().unwrap().clone();
    assert!(log.contains("connection created"), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");
    assert!(!log.contains(TLS_KEY) && !log.contains(ENC_KEY), "{log}");
    // Stored encrypted: no password in the management database.
    let stored: Vec<String> = sqlx::query_scalar("SELECT database_url FROM cpi_connections")
        .fetch_all(&db.pool().await)
        .await
        .unwrap();
    assert!(stored
        .iter()
        .all(|u| u.starts_with("cpi:v1:k1:") && !u.contains(PASSWORD)));
    assert!(!log.contains(TOKEN), "{log}");
    assert!(!log.contains(&db.url()), "{log}");
}
