//! Waiting for something another process does: every wait has a deadline
//! and, when it passes, an error that names what was awaited, so a hung
//! test says what never happened instead of timing out silently.

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::db::{scalar_i64, scalar_text};

/// How often a wait checks again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns `Some`; an error naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    try_wait_for(what, timeout, || {
        let f = check();
        async move { Ok(f.await) }
    })
    .await
}

/// Like [`wait_for`], but `check` may give up early with an error (say, the
/// process that should act has exited).
pub async fn try_wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => return Err(format!("while waiting for {what}: {e}")),
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until a COPY streams into `pool`'s database, while `child` (the
/// importing process) is still running.
pub async fn copy_streaming(
    pool: &PgPool,
    child: &mut Child,
    timeout: Duration,
) -> Result<(), String> {
    try_wait_for("a COPY streaming into the target", timeout, || {
        let exited = child.try_wait().unwrap().is_some();
        let pool = pool.clone();
        async move {
            if exited {
                return Err("cpi finished before the COPY was seen".to_string());
            }
            Ok((super::db::active_copies(&pool).await > 0).then_some(()))
        }
    })
    .await
}

/// Reads lines from `stream` (a child's stderr, say) until one contains
/// `needle`; everything read so far, or an error naming the needle and
/// holding what was read.
pub fn read_until(
    stream: impl Read + Send + 'static,
    needle: &str,
    timeout: Duration,
) -> Result<String, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + timeout;
    let mut seen = String::new();
    while Instant::now() < deadline && !seen.contains(needle) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&line);
            seen.push('\n');
        }
    }
    if seen.contains(needle) {
        Ok(seen)
    } else {
        Err(format!(
            "timed out after {timeout:?} waiting for a line with {needle:?}; read:\n{seen}"
        ))
    }
}

/// Waits until `sql` (one bigint, see [`scalar_i64`]) returns `want`; the
/// error names `what` and the query.
pub async fn wait_i64(
    pool: &PgPool,
    secs: u64,
    what: &str,
    sql: &str,
    want: i64,
) -> Result<(), String> {
    wait_scalar(pool, secs, &format!("{what} ({sql} = {want})"), sql, |n| {
        n == want
    })
    .await
}

/// Waits until `sql` (one bigint) returns `min` or more, for counts that
/// keep growing.
pub async fn wait_at_least(
    pool: &PgPool,
    secs: u64,
    what: &str,
    sql: &str,
    min: i64,
) -> Result<(), String> {
    wait_scalar(pool, secs, &format!("{what} ({sql} >= {min})"), sql, |n| {
        n >= min
    })
    .await
}

async fn wait_scalar(
    pool: &PgPool,
    secs: u64,
    what: &str,
    sql: &str,
    ok: impl Fn(i64) -> bool,
) -> Result<(), String> {
    wait_for(what, Duration::from_secs(secs), || {
        let pool = pool.clone();
        let ok = &ok;
        async move { ok(scalar_i64(&pool, sql).await).then_some(()) }
    })
    .await
}

/// Waits until the stored URL of the (only) connection contains `needle`,
/// as after a password rotation.
pub async fn wait_url(pool: &PgPool, secs: u64, what: &str, needle: &str) -> Result<(), String> {
    wait_for(what, Duration::from_secs(secs), || {
        let pool = pool.clone();
        async move {
            let url = scalar_text(&pool, "SELECT database_url FROM cpi_connections")
                .await
                .unwrap_or_default();
            url.contains(needle).then_some(())
        }
    })
    .await
}

/// Waits until exactly one COPY streams into `pool`'s database (an import
/// mid-way), then a little longer so that rows are on their way.
pub async fn copy_running(pool: &PgPool, timeout: Duration) -> Result<(), String> {
    wait_for("the import streaming (one active COPY)", timeout, || {
        let pool = pool.clone();
        async move { (super::db::active_copies(&pool).await == 1).then_some(()) }
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// Waits until `GET url` answers 200 (a server up and ready).
pub async fn http_ok(url: &str, timeout: Duration) -> Result<(), String> {
    let http = reqwest::Client::new();
    wait_for(&format!("GET {url} to answer 200"), timeout, || {
        let get = http.get(url).send();
        async move { get.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
    })
    .await
}

/// Waits until `path` exists (a file moved into place, a report written).
pub async fn exists(path: &Path, timeout: Duration) -> Result<(), String> {
    wait_for(&format!("{} to exist", path.display()), timeout, || {
        let found = path.exists();
        async move { found.then_some(()) }
    })
    .await
}
