//! The routes the console needs: reconcile runs, job retry, import
//! statistics; and the console's own files.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::api::Server;
use crate::support::db::insert_job as job;

/// Inserts a finished reconcile run `seconds_ago` old; its id.
async fn run(pool: &sqlx::PgPool, status: &str, drifted: i32, seconds_ago: i32) -> String {
    let (id,): (uuid::Uuid,) = sqlx::query_as(
        "INSERT INTO cpi_reconcile_runs (owner, trigger, status, created, drifted, diff, error, started_at, finished_at)
         VALUES ('cpi', 'daemon', $1, 1, $2,
                 '+ connection c: postgres://app:********@db/app [drift: changed outside cpi]',
                 CASE WHEN $1 = 'succeeded' THEN NULL ELSE 'cannot reach postgres://app:hunter2-planted@db/app' END,
                 now() - make_interval(secs => $3), now() - make_interval(secs => $3))
         RETURNING id",
    )
    .bind(status)
    .bind(drifted)
    .bind(f64::from(seconds_ago))
    .fetch_one(pool)
    .await
    .unwrap();
    id.to_string()
}

#[tokio::test]
async fn reconcile_runs_list_page_filter_and_one() {
    let s = Server::start().await;
    let failed = run(&s.pool, "failed", 0, 1).await;
    run(&s.pool, "succeeded", 2, 2).await;
    let oldest = run(&s.pool, "succeeded", 3, 3).await;

    let r = s
        .call_auth(Method::GET, "/reconcile/runs", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["total"], 3);
    assert_eq!(r.json["drifted_total"], 5);
    assert_eq!(r.json["runs"][0]["id"], json!(failed));
    assert!(
        r.json["runs"][0].get("diff").is_none(),
        "the list leaves diffs out"
    );
    assert!(!r.text.contains("hunter2-planted"), "{}", r.text);

    let r = s
        .get("/reconcile/runs?status=succeeded&limit=1&offset=1")
        .await;
    assert_eq!(r.json["total"], 2);
    assert_eq!(r.json["runs"].as_array().unwrap().len(), 1);
    assert_eq!(r.json["runs"][0]["id"], json!(oldest));

    let r = s
        .call_auth(
            Method::GET,
            &format!("/reconcile/runs/{oldest}"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["drifted"], 3);
    assert!(r.json["diff"].as_str().unwrap().contains("[drift"));
    let r = s.get(&format!("/reconcile/runs/{failed}")).await;
    assert!(!r.text.contains("hunter2-planted"), "{}", r.text);

    let r = s
        .get(&format!("/reconcile/runs/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for q in ["status=bogus", "limit=501", "x=1"] {
        let r = s.get(&format!("/reconcile/runs?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text);
    }
    s.stop().await;
}

#[tokio::test]
async fn import_stats_are_hourly_buckets_with_the_queue() {
    let s = Server::start().await;
    job(&s.pool, "a", "succeeded", 10).await;
    job(&s.pool, "a", "succeeded", 20).await;
    job(&s.pool, "a", "failed", 30).await;
    job(&s.pool, "a", "failed", 3 * 86400).await; // outside 24 h, inside 7 days
    job(&s.pool, "a", "succeeded", 9 * 86400).await; // outside 7 days
    job(&s.pool, "a", "queued", 5).await;
    sqlx::query(
        "UPDATE cpi_import_jobs SET started_at = NULL, finished_at = NULL WHERE status = 'queued'",
    )
    .execute(&s.pool)
    .await
    .unwrap();

    let r = s.call_auth(Method::GET, "/stats/imports", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["days"], 7);
    assert_eq!(r.json["bucket_seconds"], 3600);
    let buckets = r.json["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 7 * 24, "every hour, empty ones too");
    let sum = |k: &str| buckets.iter().map(|b| b[k].as_i64().unwrap()).sum::<i64>();
    assert_eq!(sum("files"), 4);
    assert_eq!(sum("succeeded"), 2);
    assert_eq!(sum("failed"), 2);
    assert_eq!(sum("rows"), 14, "7 rows per succeeded job");
    let max = buckets
        .iter()
        .map(|b| b["duration_max_seconds"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!((max - 1.5).abs() < 0.01, "{max}");
    // Oldest first, an hour apart.
    let t = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(buckets[i]["hour"].as_str().unwrap()).unwrap()
    };
    assert_eq!((t(1) - t(0)).num_seconds(), 3600);
    assert_eq!(r.json["queued"], 1);
    assert_eq!(r.json["running"], 0);
    assert_eq!(r.json["failed_last_24h"], 1);

    let r = s.get("/stats/imports?days=1").await;
    assert_eq!(r.json["buckets"].as_array().unwrap().len(), 24);
    for q in ["days=0", "days=91", "days=x"] {
        let r = s.get(&format!("/stats/imports?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text);
    }
    s.stop().await;
}

#[tokio::test]
async fn retry_requeues_a_failed_job_with_the_token_only() {
    let s = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.csv");
    std::fs::write(&file, "a\n1\n").unwrap();
    let failed = job(&s.pool, "a", "failed", 10).await;
    sqlx::query("UPDATE cpi_import_jobs SET file_path = $2 WHERE id = $1::uuid")
        .bind(&failed)
        .bind(file.to_str().unwrap())
        .execute(&s.pool)
        .await
        .unwrap();
    let done = job(&s.pool, "a", "succeeded", 10).await;
    let gone = job(&s.pool, "a", "failed", 10).await;

    let path = format!("/jobs/{failed}/retry");
    let r = s.call_auth(Method::POST, &path, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = s
        .call_auth(Method::POST, &path, None, Some("Bearer wrong"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = s.call(Method::POST, &path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "queued");
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM cpi_import_jobs WHERE id = $1::uuid")
            .bind(&failed)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(status, "queued");

    // Not failed any more, finished, its file gone, no such job.
    for (id, want) in [
        (failed.clone(), StatusCode::CONFLICT),
        (done, StatusCode::CONFLICT),
        (gone, StatusCode::CONFLICT),
        (uuid::Uuid::new_v4().to_string(), StatusCode::NOT_FOUND),
    ] {
        let r = s
            .call(Method::POST, &format!("/jobs/{id}/retry"), None)
            .await;
        assert_eq!(r.status, want, "{id}: {}", r.text);
        assert!(r.json["error"].is_string(), "{}", r.text);
    }
    s.stop().await;
}

#[tokio::test]
async fn the_console_is_served_at_the_root_with_strict_headers() {
    let s = Server::start_with(None, cpi::metrics::Health::new()).await;
    let client = reqwest::Client::new();
    let r = client.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(h["cache-control"], "no-cache");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    let etag = h["etag"].to_str().unwrap().to_string();
    let html = r.text().await.unwrap();
    assert!(html.contains("/console/app.js"));

    let r = client
        .get(format!("{}/", s.base))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    for (file, ty) in [
        ("app.js", "text/javascript"),
        ("pages.js", "text/javascript"),
        ("style.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = client
            .get(format!("{}/console/{file}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{file}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ty),
            "{file}"
        );
    }
    let r = client
        .get(format!("{}/console/nope.js", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}
