//! `/healthz`, `/readyz`, `/metrics`, unknown routes.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::api::Server;
use crate::support::db::{exec, insert_job as job};
use cpi::metrics::{Health, ReconcileStatus};

#[tokio::test]
async fn healthz_and_readyz() {
    let s = Server::start().await;
    let r = s.call_auth(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json, json!({"status": "ok"}));
    let r = s.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["ready"], true);
    assert_eq!(r.json["database"], "ok");
    assert_eq!(r.json["reconciler"], false);
    s.stop().await;
}

#[tokio::test]
async fn readyz_waits_for_the_first_successful_reconcile() {
    let s = Server::start_with(Some("t"), Health::with_reconciler()).await;
    let r = s.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.json["last_reconcile"], json!(null));

    s.health
        .reconciled(ReconcileStatus::Failed, Some("manifests/x.yaml:3: bad"));
    let r = s.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json["last_reconcile"]["status"], "failed");
    assert_eq!(r.json["last_reconcile"]["error"], "manifests/x.yaml:3: bad");

    s.health.reconciled(ReconcileStatus::Succeeded, None);
    let r = s.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["last_reconcile"]["status"], "succeeded");
    s.stop().await;
}

#[tokio::test]
async fn an_unreachable_database_is_not_ready_but_metrics_still_answer() {
    let db = crate::support::TestDb::new().await;
    // Nothing listens on port 1.
    let dead = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://postgres:Dd-pw-77@127.0.0.1:1/x")
        .unwrap();
    let state = cpi::api::AppState::new(dead.clone(), None, Arc::new(Health::new()));
    let s = Server::serve(db, dead, state).await;
    let r = s.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.json["ready"], false);
    assert!(r.json["database"]
        .as_str()
        .unwrap()
        .starts_with("unreachable"));
    assert!(!r.text.contains("Dd-pw-77"));
    assert_eq!(s.get("/healthz").await.status, StatusCode::OK);
    let r = s.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("cpi_database_up 0"), "{}", r.text);
    assert!(r.text.contains("cpi_watcher_errors_total 0"));
    // Reads that need the database answer 503, not 500.
    let r = s.get("/connections").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn metrics_count_from_the_database_and_the_process() {
    let s = Server::start().await;
    job(&s.pool, "a", "queued", 1).await;
    job(&s.pool, "a", "queued", 1).await;
    job(&s.pool, "a", "succeeded", 1).await;
    job(&s.pool, "a", "failed", 1).await;
    sqlx::query(
        "INSERT INTO cpi_reconcile_runs (owner, trigger, status, drifted, finished_at)
         VALUES ('cpi', 'cli', 'succeeded', 3, now()), ('cpi', 'cli', 'refused', 0, now())",
    )
    .execute(&s.pool)
    .await
    .unwrap();
    s.managed_connection("m", "connections/m.yaml").await;
    s.connection("u", "postgres://h/d").await;
    s.health.watcher_error();
    s.health.watcher_error();

    let r = s.call_auth(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type().starts_with("text/plain; version=0.0.4"));
    for line in [
        "cpi_database_up 1",
        "cpi_import_jobs{status=\"queued\"} 2",
        "cpi_import_jobs{status=\"succeeded\"} 1",
        "cpi_import_jobs{status=\"failed\"} 1",
        "cpi_import_jobs{status=\"duplicate\"} 0",
        "cpi_import_queue_depth 2",
        "cpi_import_rows_total{outcome=\"read\"} 10",
        "cpi_import_rows_total{outcome=\"inserted\"} 7",
        "cpi_import_duration_seconds_bucket{le=\"1\"} 0",
        "cpi_import_duration_seconds_bucket{le=\"2.5\"} 2",
        "cpi_import_duration_seconds_bucket{le=\"+Inf\"} 2",
        "cpi_import_duration_seconds_sum 3",
        "cpi_import_duration_seconds_count 2",
        "cpi_reconcile_runs_total{status=\"succeeded\"} 1",
        "cpi_reconcile_runs_total{status=\"refused\"} 1",
        "cpi_reconcile_runs_total{status=\"failed\"} 0",
        "cpi_drift_corrections_total 3",
        "cpi_objects{kind=\"connection\",managed_by=\"cpi\"} 1",
        "cpi_objects{kind=\"connection\",managed_by=\"\"} 1",
        "cpi_watcher_errors_total 2",
        "cpi_reconcile_ready 1",
    ] {
        assert!(
            r.text.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            r.text
        );
    }
    assert!(r
        .text
        .contains("# TYPE cpi_import_duration_seconds histogram"));
    assert!(r
        .text
        .contains("cpi_reconcile_last_success_timestamp_seconds "));
    // Every sample is a cpi_* metric.
    for l in r.text.lines().filter(|l| !l.starts_with('#')) {
        assert!(l.starts_with("cpi_"), "{l}");
    }
    s.stop().await;
}

/// /metrics reads the finished jobs' totals kept by triggers (not the whole
/// history): they follow the table through retries (finished → queued →
/// finished), multi-row updates and prunes, exactly as a full scan would.
/// `/metrics` (as text) after `sql` has changed the job `id` (`$1`).
async fn metrics_after(s: &Server, sql: &'static str, id: &str) -> String {
    sqlx::query(sql).bind(id).execute(&s.pool).await.unwrap();
    s.call_auth(Method::GET, "/metrics", None, None).await.text
}

#[tokio::test]
async fn metrics_totals_follow_retries_and_prunes() {
    let s = Server::start().await;
    let failed = job(&s.pool, "a", "failed", 1).await;
    for _ in 0..3 {
        job(&s.pool, "a", "succeeded", 1).await;
    }
    job(&s.pool, "b", "duplicate", 90_000).await;
    let metric = |text: &str, name: &str| -> String {
        let line = text.lines().find(|l| l.starts_with(&format!("{name} ")));
        line.unwrap_or_else(|| panic!("no {name} in\n{text}"))[name.len() + 1..].to_string()
    };
    let t = s.call_auth(Method::GET, "/metrics", None, None).await.text;
    assert_eq!(metric(&t, "cpi_import_jobs{status=\"failed\"}"), "1");
    assert_eq!(metric(&t, "cpi_import_duration_seconds_count"), "4");

    // A retry takes the failed job out of the totals (the gauge follows)...
    let t = metrics_after(
        &s,
        "UPDATE cpi_import_jobs SET status = 'queued', started_at = NULL, finished_at = NULL
          WHERE id = $1::uuid",
        &failed,
    )
    .await;
    assert_eq!(metric(&t, "cpi_import_jobs{status=\"failed\"}"), "0");
    assert_eq!(metric(&t, "cpi_import_jobs{status=\"queued\"}"), "1");
    // ...but a counter never goes down (a Prometheus counter only resets
    // with the process): the failed run stays counted.
    assert_eq!(metric(&t, "cpi_import_duration_seconds_count"), "4");
    // Its success puts it back, with its rows and its duration, counted
    // as one more finished run.
    let t = metrics_after(
        &s,
        "UPDATE cpi_import_jobs SET status = 'succeeded', rows_read = 5, rows_inserted = 5,
                started_at = now() - interval '40 seconds', finished_at = now() WHERE id = $1::uuid",
        &failed,
    )
    .await;
    assert_eq!(metric(&t, "cpi_import_jobs{status=\"succeeded\"}"), "4");
    assert_eq!(metric(&t, "cpi_import_rows_total{outcome=\"read\"}"), "35");
    assert_eq!(
        metric(&t, "cpi_import_duration_seconds_bucket{le=\"30\"}"),
        "4"
    );
    assert_eq!(
        metric(&t, "cpi_import_duration_seconds_bucket{le=\"60\"}"),
        "5"
    );
    assert_eq!(metric(&t, "cpi_import_duration_seconds_count"), "5");

    // A multi-row update and a prune (what `cpi prune` deletes).
    for sql in [
        "UPDATE cpi_import_jobs SET rows_rejected = 1 WHERE status = 'succeeded'",
        "DELETE FROM cpi_import_jobs WHERE finished_at < now() - interval '1 day'",
    ] {
        exec(&s.pool, sql).await;
    }
    let t = s.call_auth(Method::GET, "/metrics", None, None).await.text;
    assert_eq!(metric(&t, "cpi_import_jobs{status=\"duplicate\"}"), "0");
    assert_eq!(
        metric(&t, "cpi_import_rows_total{outcome=\"rejected\"}"),
        "4"
    );

    // The invariant, checked against a full scan.
    let diff: i64 = sqlx::query_scalar(
        "WITH scan AS (
             SELECT status, cpi_duration_bucket(started_at, finished_at) AS bucket, count(*) AS jobs,
                    sum(rows_read) AS r, sum(rows_rejected) AS x
               FROM cpi_import_jobs WHERE status IN ('succeeded', 'failed', 'duplicate') GROUP BY 1, 2
         ), kept AS (
             SELECT status, bucket, jobs, rows_read AS r, rows_rejected AS x
               FROM cpi_import_job_totals WHERE jobs <> 0
         )
         SELECT count(*) FROM ((SELECT * FROM scan EXCEPT SELECT * FROM kept)
                     UNION ALL (SELECT * FROM kept EXCEPT SELECT * FROM scan)) d",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(diff, 0, "totals and table disagree");
    s.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let s = Server::start().await;
    let r = s.get("/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("no route"), "{}", r.text);
    let r = s.call(Method::PATCH, "/connections", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    s.stop().await;
}
