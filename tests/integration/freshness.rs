//! Freshness (issue #24): a table with `freshness: {warn_after, error_after}`
//! goes fresh → warn → error as time passes without a file, and fresh again
//! when one comes. Seen the same in `cpi freshness` (exit 0/2/3), `/metrics`,
//! the console's badge (a real browser) and one event per change.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::Value;

use crate::console::Daemon;
use crate::support::bin::{Cpi, Run};
use crate::support::console::world;
use crate::support::daemon::{csv_rows, events_table};
use crate::support::manifests::{connection_to, project};
use crate::support::wait::wait_i64;
use crate::support::{write, TestDb};

async fn freshness(db: &TestDb) -> Run {
    Cpi::new(["freshness", "-p", "sales", "-o", "json"])
        .db(db)
        .run_async()
        .await
}

/// Waits until `cpi freshness` answers `code`; its report of the table.
async fn wait_state(db: &TestDb, code: i32, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = freshness(db).await;
        if r.code == code {
            let v: Value = serde_json::from_str(&r.stdout).unwrap();
            return v[0].clone();
        }
        assert!(Instant::now() < deadline, "never exit {code}: {}", r.all());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn metric(base: &str) -> String {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("cpi_table_freshness_state{"))
        .unwrap_or_else(|| panic!("no freshness gauge:\n{text}"))
        .to_string()
}

async fn event_kinds(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT kind FROM cpi_events WHERE kind LIKE 'freshness.%' AND target_table = 'events' ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_table_goes_fresh_warn_error_and_fresh_again_everywhere() {
    let (b, db) = world().await;
    let tmp = &b.tmp;
    let pool = db.pool().await;
    events_table(&pool).await;
    let m = tmp.path().join("manifests");
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    write(&m, "c.yaml", &connection_to("warehouse", &db, "target"));
    write(&m, "warehouse.pass", "unused\n");
    write(
        &m,
        "p.yaml",
        &project(
            "sales",
            "warehouse",
            &inbox,
            "{table: events, mode: append, freshness: {warn_after: 4s, error_after: 12s}}",
        ),
    );
    let d = Daemon::start(&db, &m).await;
    let imported = |n: i64| {
        let pool = pool.clone();
        async move {
            wait_i64(
                &pool,
                30,
                "the files imported",
                "SELECT count(*) FROM cpi_import_jobs WHERE status = 'succeeded'",
                n,
            )
            .await
            .unwrap();
        }
    };
    std::fs::write(inbox.join("a.csv"), csv_rows(1, 3, "a")).unwrap();
    imported(1).await;
    let project_id: String =
        sqlx::query_scalar("SELECT id::text FROM cpi_projects WHERE name = 'sales'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let badge = |want: &'static str| {
        let (c, base, id) = (b.c.clone(), d.base.clone(), project_id.clone());
        async move {
            // Same URL as before: only a reload renders the page anew.
            c.goto(&format!("{base}/#/projects/{id}")).await.unwrap();
            c.refresh().await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let text = match c
                    .find(Locator::Css("span.badge[data-table='events']"))
                    .await
                {
                    Ok(e) => e.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                if text == want {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "the console's badge says {text:?}, not {want}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    let t = wait_state(&db, 0, 5).await;
    assert_eq!(
        (t["table"].as_str(), t["state"].as_str()),
        (Some("events"), Some("fresh")),
        "{t}"
    );
    assert!(t["last_import"].is_string(), "{t}");
    assert!(metric(&d.base).await.ends_with(" 0"));
    badge("fresh").await;
    let show = Cpi::new(["projects", "show", "sales", "-o", "json"])
        .db(&db)
        .run_async()
        .await;
    let show: Value =
        serde_json::from_str(&show.stdout).unwrap_or_else(|e| panic!("{e}: {}", show.all()));
    assert_eq!(show["freshness"][0]["table"], "events", "{show}");
    assert_eq!(show["freshness"][0]["warn_after"], "4s", "{show}");

    let t = wait_state(&db, 2, 15).await;
    assert_eq!(t["state"], "warn", "{t}");
    assert!(metric(&d.base).await.ends_with(" 1"));
    badge("warn").await;

    let t = wait_state(&db, 3, 20).await;
    assert_eq!(t["state"], "error", "{t}");
    assert!(metric(&d.base).await.ends_with(" 2"));
    badge("error").await;

    std::fs::write(inbox.join("b.csv"), csv_rows(10, 3, "b")).unwrap();
    imported(2).await;
    wait_state(&db, 0, 10).await;
    assert!(metric(&d.base).await.ends_with(" 0"));
    badge("fresh").await;

    // One event per change, in order, written by the daemon's timer.
    let want = ["freshness.warn", "freshness.error", "freshness.recovered"];
    let deadline = Instant::now() + Duration::from_secs(10);
    while event_kinds(&pool).await.len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(event_kinds(&pool).await, want);
    let payload: Value =
        sqlx::query_scalar("SELECT payload FROM cpi_events WHERE kind = 'freshness.error'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (payload["was"].as_str(), payload["error_after"].as_str()),
        (Some("warn"), Some("12s")),
        "{payload}"
    );

    b.c.close().await.unwrap();
    d.stop().await;
}
