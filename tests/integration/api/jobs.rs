//! `/jobs`: filters, pagination, one job, and their errors.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::api::Server;
use crate::support::db::insert_job as job;

#[tokio::test]
async fn list_filter_and_paginate() {
    let s = Server::start().await;
    let newest = job(&s.pool, "a", "failed", 1).await;
    job(&s.pool, "a", "succeeded", 2).await;
    job(&s.pool, "b", "succeeded", 3).await;
    let oldest = job(&s.pool, "b", "queued", 4).await;

    let r = s.get("/jobs").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["total"], 4);
    assert_eq!(r.json["limit"], 50);
    assert_eq!(r.json["offset"], 0);
    let jobs = r.json["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 4);
    assert_eq!(jobs[0]["id"], json!(newest));
    assert_eq!(jobs[3]["id"], json!(oldest));
    for key in [
        "project_id",
        "project_name",
        "connection_id",
        "file_name",
        "file_path",
        "file_size",
        "file_sha256",
        "target_table",
        "mode",
        "status",
        "rows_read",
        "rows_inserted",
        "rows_updated",
        "rows_deleted",
        "rows_rejected",
        "error",
        "error_details",
        "worker",
        "attempts",
        "lease_expires_at",
        "created_at",
        "started_at",
        "finished_at",
    ] {
        assert!(jobs[0].get(key).is_some(), "{key} missing");
    }

    let r = s.get("/jobs?project=a").await;
    assert_eq!(r.json["total"], 2);
    let r = s.get("/jobs?status=succeeded").await;
    assert_eq!(r.json["total"], 2);
    let r = s.get("/jobs?project=b&status=queued").await;
    assert_eq!(r.json["total"], 1);
    assert_eq!(r.json["jobs"][0]["id"], json!(oldest));

    let r = s.get("/jobs?limit=2&offset=1").await;
    assert_eq!(r.json["total"], 4);
    assert_eq!(r.json["limit"], 2);
    assert_eq!(r.json["offset"], 1);
    assert_eq!(r.json["jobs"].as_array().unwrap().len(), 2);
    let r = s.get("/jobs?offset=10").await;
    assert_eq!(r.json["jobs"], json!([]));
    assert_eq!(r.json["total"], 4);
    s.stop().await;
}

#[tokio::test]
async fn bad_queries_answer_400() {
    let s = Server::start().await;
    for q in [
        "status=bogus",
        "limit=501",
        "limit=-1",
        "offset=x",
        "offset=2147483648",
        "unknown=1",
    ] {
        let r = s.get(&format!("/jobs?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text);
        assert!(!r.error().is_empty(), "{q}");
    }
    s.stop().await;
}

#[tokio::test]
async fn one_job() {
    let s = Server::start().await;
    let id = job(&s.pool, "a", "failed", 1).await;
    sqlx::query("UPDATE cpi_import_jobs SET error = 'cannot connect to postgres://bob:Jb-pw-31@db/x' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&s.pool)
        .await
        .unwrap();
    let r = s.get(&format!("/jobs/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "failed");
    assert_eq!(r.json["rows_read"], 10);
    assert!(!r.text.contains("Jb-pw-31"), "{}", r.text);
    assert!(!s.get("/jobs").await.text.contains("Jb-pw-31"));

    let r = s.get(&format!("/jobs/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = s.get("/jobs/not-a-uuid").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    s.stop().await;
}

/// A check's sample rows are row values: only with the token; its name and
/// counts for everyone.
#[tokio::test]
async fn check_samples_only_with_the_token() {
    let s = Server::start().await;
    let id = job(&s.pool, "a", "failed", 1).await;
    sqlx::query("UPDATE cpi_import_jobs SET error_details = $2 WHERE id = $1::uuid")
        .bind(&id)
        .bind(
            json!({"errors": [], "checks": [{"check": "not_null(x)", "failing": 1,
            "samples": [{"line": 2, "row": {"x": "secret-row-value"}}]}]}),
        )
        .execute(&s.pool)
        .await
        .unwrap();
    let path = format!("/jobs/{id}");
    let with = s.get(&path).await;
    assert!(with.text.contains("secret-row-value"), "{}", with.text);
    let without = s.call_auth(reqwest::Method::GET, &path, None, None).await;
    assert_eq!(without.status, StatusCode::OK, "{}", without.text);
    assert!(
        !without.text.contains("secret-row-value"),
        "{}",
        without.text
    );
    assert!(without.text.contains("not_null(x)"), "{}", without.text);
}

/// `GET /jobs/{id}/rejected` lists the rows a job kept in its target's
/// `cpi.rejected_rows` (`rejects: table`), as `cpi jobs show --rejected`
/// does; they hold row values, so only a caller who may read secrets sees
/// them.
#[tokio::test]
async fn rejected_rows_of_a_job_are_listed_for_whoever_may_read_row_values() {
    let s = Server::start().await;
    let conn = s.connection("t", &s.db.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = s
        .post(
            "/projects",
            json!({"name": "p", "connection_id": conn, "config": {
                "inbox": dir.path().to_str().unwrap(),
                "defaults": {"table": "t", "create_table": true, "on_error": "skip_rows", "rejects": "table"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let file = dir.path().join("t.csv");
    std::fs::write(&file, "id,v\n1,a\n2\n3,c\n4,d,row-value-9\n").unwrap();
    let run = crate::support::Cpi::new([
        "import",
        "--project",
        "p",
        file.to_str().unwrap(),
        "-o",
        "json",
    ])
    .db(&s.db)
    .run_async()
    .await;
    let out: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.all()));
    assert_eq!(out[0]["status"], "succeeded", "{out}");
    let id = out[0]["job_id"].as_str().unwrap().to_string();

    let r = s.get(&format!("/jobs/{id}/rejected")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["total"], 2, "{}", r.text);
    assert_eq!(r.json["rows"][0]["line"], 3);
    assert_eq!(r.json["rows"][0]["raw"], "2");
    assert_eq!(r.json["rows"][1]["raw"], "4,d,row-value-9");
    assert!(
        r.json["rows"][1]["error"]
            .as_str()
            .unwrap()
            .contains("expected 2 fields, found 3"),
        "{}",
        r.text
    );
    let r = s.get(&format!("/jobs/{id}/rejected?limit=1")).await;
    assert_eq!(
        (
            r.json["total"].as_i64(),
            r.json["rows"].as_array().map(Vec::len)
        ),
        (Some(2), Some(1))
    );

    // Without the token: refused, and no row value in the answer.
    let r = s
        .call_auth(
            reqwest::Method::GET,
            &format!("/jobs/{id}/rejected"),
            None,
            None,
        )
        .await;
    assert!(
        r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::FORBIDDEN,
        "{} {}",
        r.status,
        r.text
    );
    assert!(!r.text.contains("row-value-9"), "{}", r.text);
    let r = s
        .get(&format!("/jobs/{}/rejected", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}
