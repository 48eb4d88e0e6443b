//! Target connections kept open between imports, per connection: a small
//! file's import is a few milliseconds of COPY, while connecting (a TLS
//! handshake, authentication) costs more than that.
//!
//! Idle connections are cached per connection id and URL (the URL string:
//! a rotated password or a new host makes a new key, and the old
//! connections are closed). A connection goes back to the cache only after
//! its import ended cleanly (committed or rolled back); one dropped
//! mid-import (shutdown, error) is closed, so the server rolls back.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::secret::Secret;

/// Idle connections kept per target.
const IDLE_PER_TARGET: usize = 4;
/// Targets with idle connections kept at most (least recently used closed first).
const MAX_TARGETS: usize = 64;
/// An idle connection unused for this long is closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A connection given back this recently is reused without a ping (a round
/// trip per file): it answered a moment ago. Should the server have closed
/// it meanwhile, the import fails as transient and its job is retried.
const FRESH: Duration = Duration::from_secs(2);

struct Idle {
    /// The URL the connections were opened with.
    url: Secret,
    conns: Vec<(PgConnection, Instant)>,
    used: Instant,
}

static CACHE: LazyLock<Mutex<HashMap<Uuid, Idle>>> = LazyLock::new(Mutex::default);

/// An idle connection to `url` for connection `id`, if one is cached and
/// still answers; connections cached for another URL of `id` are closed.
pub(crate) async fn take(id: Uuid, url: &Secret) -> Option<PgConnection> {
    loop {
        let (conn, stale) = {
            let mut cache = CACHE.lock().unwrap();
            let mut stale = Vec::new();
            if cache
                .get(&id)
                .is_some_and(|i| i.url.expose() != url.expose())
            {
                stale.extend(cache.remove(&id).into_iter().flat_map(|i| i.conns));
            }
            let conn = cache.get_mut(&id).and_then(|i| {
                i.used = Instant::now();
                i.conns.pop()
            });
            (conn, stale)
        };
        close_all(stale);
        let (mut conn, since) = conn?;
        if since.elapsed() > IDLE_TIMEOUT {
            close_all(vec![(conn, since)]);
            continue;
        }
        // A connection the server closed meanwhile (restart, idle timeout)
        // fails here rather than in the import.
        if since.elapsed() < FRESH || conn.ping().await.is_ok() {
            return Some(conn);
        }
    }
}

/// Puts a connection whose import ended cleanly back for the next import.
pub(crate) fn give_back(id: Uuid, url: &Secret, conn: PgConnection) {
    let mut closing = Vec::new();
    {
        let mut cache = CACHE.lock().unwrap();
        let now = Instant::now();
        let idle = cache.entry(id).or_insert_with(|| Idle {
            url: url.clone(),
            conns: Vec::new(),
            used: now,
        });
        if idle.url.expose() != url.expose() {
            // The URL changed while this import ran: this connection is the old one's.
            closing.push((conn, now));
        } else if idle.conns.len() < IDLE_PER_TARGET {
            idle.conns.push((conn, now));
            idle.used = now;
        } else {
            closing.push((conn, now));
        }
        while cache.len() > MAX_TARGETS {
            let Some(oldest) = cache.iter().min_by_key(|(_, i)| i.used).map(|(k, _)| *k) else {
                break;
            };
            closing.extend(cache.remove(&oldest).into_iter().flat_map(|i| i.conns));
        }
    }
    close_all(closing);
}

/// Closes every cached connection (the daemon calls it when it stops).
pub async fn close_idle() {
    let all: Vec<_> = CACHE
        .lock()
        .unwrap()
        .drain()
        .flat_map(|(_, i)| i.conns)
        .collect();
    for (c, _) in all {
        let _ = c.close().await;
    }
}

fn close_all(conns: Vec<(PgConnection, Instant)>) {
    if conns.is_empty() {
        return;
    }
    // Politely when a runtime is there; dropping closes the socket anyway.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            for (c, _) in conns {
                let _ = c.close().await;
            }
        });
    }
}
