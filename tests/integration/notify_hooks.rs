//! Receivers (issue #25): `POST /hooks/{receiver}` on a real `cpi run`. A
//! GitHub-signed push reconciles at once; a wrong or missing signature is
//! 401 and starts nothing; a 10 MB body is refused without being read.

use std::time::{Duration, Instant};

use crate::support::daemon::{Daemon, Setup};
use crate::support::db::scalar_i64;
use crate::support::fs::manifest;
use crate::support::wait::{http_ok, wait_for};
use crate::support::{free_port, write, TestDb};

const HOOK_KEY: &str = "planted-receiver-secret-3390";

async fn hook_runs(pool: &sqlx::PgPool) -> i64 {
    scalar_i64(
        pool,
        "SELECT count(*) FROM cpi_reconcile_runs WHERE trigger = 'hook'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_github_push_reconciles_at_once_and_a_bad_one_starts_nothing() {
    let db = TestDb::new().await;
    let (s, pool) = Setup::events(&db).await;
    let m = s.manifests();
    write(
        &m,
        "notify/gh.yaml",
        &manifest(
            "Receiver",
            "gh",
            "type: github\nsecret_file: ../gh.key\ntriggers: [reconcile, rescan]\nprojects: [p]\n",
        ),
    );
    write(
        &m,
        "notify/plain.yaml",
        &manifest(
            "Receiver",
            "plain",
            "type: webhook\nsecret_file: ../gh.key\ntriggers: [rescan]\nprojects: [p]\n",
        ),
    );
    write(&m, "../gh.key", &format!("{HOOK_KEY}\n"));
    let addr = format!("127.0.0.1:{}", free_port());
    // Neither the watcher nor the timer reconciles during the test: only a push.
    let mut d = Daemon::start(
        &db,
        &m,
        &s.log("d.log"),
        &[
            "--listen",
            &addr,
            "--poll",
            "--poll-interval",
            "1h",
            "--interval",
            "1h",
            "--rescan",
            "1h",
            "--anonymous",
            "viewer",
        ],
    );
    let base = format!("http://{addr}");
    http_ok(&format!("{base}/readyz"), Duration::from_secs(30))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let push = |body: Vec<u8>, signature: Option<String>| {
        let mut req = http
            .post(format!("{base}/hooks/gh"))
            .header("x-github-event", "push")
            .header("content-type", "application/json");
        if let Some(sig) = signature {
            req = req.header("x-hub-signature-256", sig);
        }
        async move { req.body(body).send().await.unwrap() }
    };
    let body = br#"{"ref":"refs/heads/main","after":"abc"}"#.to_vec();

    // A wrong signature, a missing one, one over another body: 401, nothing runs.
    let wrong = cpi::notify::sign::signature(b"not the key", &body);
    assert_eq!(push(body.clone(), Some(wrong)).await.status(), 401);
    assert_eq!(push(body.clone(), None).await.status(), 401);
    let other = cpi::notify::sign::signature(HOOK_KEY.as_bytes(), b"another body");
    assert_eq!(push(body.clone(), Some(other)).await.status(), 401);
    assert_eq!(
        http.post(format!("{base}/hooks/nobody"))
            .body("{}")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook_runs(&pool).await, 0, "a refused push starts nothing");

    // Over the cap: refused without being read, with or without a
    // Content-Length. (On raw sockets: a client still writing a body the
    // server will not read gets a broken pipe, not the 413; CI saw it.)
    let big = vec![b'x'; 10 * 1024 * 1024];
    let t = Instant::now();
    let sig = cpi::notify::sign::signature(HOOK_KEY.as_bytes(), &big);
    assert_eq!(declared(&addr, 10 * 1024 * 1024, &sig).await, Some(413));
    let cap = cpi::api::hooks::MAX_HOOK_BODY;
    assert_eq!(chunked(&addr, cap + 1, &sig).await, Some(413));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(hook_runs(&pool).await, 0);

    // Signed: the change in git is applied within a second.
    write(
        &m,
        "projects/p.yaml",
        &std::fs::read_to_string(m.join("projects/p.yaml"))
            .unwrap()
            .replace("spec:\n", "spec:\n  description: changed in git\n"),
    );
    let sig = cpi::notify::sign::signature(HOOK_KEY.as_bytes(), &body);
    let t = Instant::now();
    let r = push(body.clone(), Some(sig)).await;
    assert_eq!(r.status(), 202);
    let accepted: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        accepted["triggered"],
        serde_json::json!(["reconcile", "rescan"])
    );
    wait_for("the hook's reconcile", Duration::from_secs(5), || {
        let pool = pool.clone();
        async move {
            let d: Option<String> =
                sqlx::query_scalar("SELECT description FROM cpi_projects WHERE name = 'p'")
                    .fetch_one(&pool)
                    .await
                    .ok()?;
            (d.as_deref() == Some("changed in git")).then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "reconciled {took:?} after the push"
    );
    assert_eq!(hook_runs(&pool).await, 1);
    assert!(!d.log().contains(HOOK_KEY));

    // A generic webhook receiver: `X-Cpi-Signature-256`, and a rescan
    // finds a file no watcher and no timer would find for an hour.
    std::fs::write(s.inbox("p").join("late.csv"), "id,tag,n\n1,a,1\n").unwrap();
    let signed = cpi::notify::sign::signature(HOOK_KEY.as_bytes(), &body);
    let as_github = http
        .post(format!("{base}/hooks/plain"))
        .header("x-hub-signature-256", &signed)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        as_github.status(),
        401,
        "a webhook receiver reads X-Cpi-Signature-256"
    );
    let r = http
        .post(format!("{base}/hooks/plain"))
        .header("x-cpi-signature-256", &signed)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    crate::support::wait::wait_i64(&pool, 5, "the rescan's import", "SELECT count(*) FROM cpi_import_jobs WHERE file_name = 'late.csv' AND status = 'succeeded'", 1)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));

    // GET /events answers (with each event's deliveries).
    let events: serde_json::Value = http
        .get(format!("{base}/events?limit=5"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(events.is_array(), "{events}");
    d.stop(10);
}

/// Sends a POST to `/hooks/gh` that declares a body of `len` bytes and
/// sends none of it; the status the server answers with, if it answers
/// (a server that waited for the body would not, within 5 s).
async fn declared(addr: &str, len: usize, sig: &str) -> Option<u16> {
    let head = format!(
        "POST /hooks/gh HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {len}\r\nX-Hub-Signature-256: {sig}\r\n\r\n"
    );
    raw_post(addr, &[head.into_bytes()]).await
}

/// POSTs `len` bytes to `/hooks/gh` chunked (no Content-Length) on a raw
/// socket, the last byte and the end in one write; the status the server
/// answers with, if it answers. The server reads up to its cap and one
/// byte more: all of it, so its close does not reset the connection
/// (which would throw the answer away before it is read).
async fn chunked(addr: &str, len: usize, sig: &str) -> Option<u16> {
    let head = format!(
        "POST /hooks/gh HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nX-Hub-Signature-256: {sig}\r\n\r\n"
    );
    let mut writes = vec![head.into_bytes()];
    let chunk = 64 * 1024;
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk);
        writes.push([format!("{n:x}\r\n").as_bytes(), &vec![b'x'; n], b"\r\n"].concat());
        left -= n;
    }
    writes.last_mut().unwrap().extend_from_slice(b"0\r\n\r\n");
    raw_post(addr, &writes).await
}

/// Writes `writes` one after the other (stopping at the first that fails:
/// the server may answer before the end), then reads the status line.
async fn raw_post(addr: &str, writes: &[Vec<u8>]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    for w in writes {
        if sock.write_all(w).await.is_err() {
            break;
        }
    }
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace().nth(1)?.parse().ok()
}
