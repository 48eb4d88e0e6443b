//! The audit row of an API action is written in the action's own
//! transaction: one row per action, committed with the change or not at
//! all (issue 26).

use reqwest::{Method, StatusCode};

use crate::support::api::Server;
use crate::support::db::insert_job;

/// A server whose API may set inbox folders anywhere.
async fn server() -> Server {
    Server::start_adjusted(|st| st.inbox_roots = std::sync::Arc::new(vec!["/".into()])).await
}

/// Every row of the trail, oldest first: actor, action, target, outcome.
async fn trail(s: &Server) -> Vec<(String, String, String, String)> {
    sqlx::query_as("SELECT actor, action, target, outcome FROM cpi_audit ORDER BY id")
        .fetch_all(&s.pool)
        .await
        .unwrap()
}

async fn job_status(s: &Server, id: &str) -> String {
    sqlx::query_scalar("SELECT status FROM cpi_import_jobs WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&s.pool)
        .await
        .unwrap()
}

async fn count(s: &Server, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&s.pool)
        .await
        .unwrap()
}

/// A project `alpha` whose inbox is `<dir>/in`; its id.
async fn alpha(s: &Server, dir: &std::path::Path, extra: serde_json::Value) -> String {
    let mut config = serde_json::json!({"inbox": dir.join("in").to_str().unwrap()});
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let r = s
        .post(
            "/projects",
            serde_json::json!({"name": "alpha", "config": config}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json["id"].as_str().unwrap().to_string()
}

async fn point_at(s: &Server, job: &str, file: &std::path::Path) {
    sqlx::query("UPDATE cpi_import_jobs SET file_path = $2, file_name = $3 WHERE id = $1::uuid")
        .bind(job)
        .bind(file.to_str().unwrap())
        .bind(file.file_name().unwrap().to_str().unwrap())
        .execute(&s.pool)
        .await
        .unwrap();
}

/// Each action leaves exactly one row (the handler's, in its transaction;
/// the enforcing layer adds none), with the actor, the target and the
/// status it answered; a refused one leaves the layer's row.
#[tokio::test]
async fn every_action_leaves_exactly_one_audit_row_with_its_outcome() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    let conn = s
        .connection("c1", "postgresql://u:planted-pw-91@127.0.0.1:1/x")
        .await;
    let project = alpha(&s, dir.path(), serde_json::json!({})).await;
    let r = s
        .put(
            &format!("/projects/{project}"),
            serde_json::json!({"description": "d"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s
        .put(
            &format!("/connections/{conn}"),
            serde_json::json!({"description": "d"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for action in ["pause", "resume"] {
        let r = s
            .call(Method::POST, &format!("/projects/alpha/{action}"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let failed = insert_job(&s.pool, "alpha", "failed", 10).await;
    let file = dir.path().join("f.csv");
    std::fs::write(&file, "a\n1\n").unwrap();
    point_at(&s, &failed, &file).await;
    let done = insert_job(&s.pool, "alpha", "succeeded", 10).await;
    let again = dir.path().join("g.csv");
    std::fs::write(&again, "a\n1\n").unwrap();
    point_at(&s, &done, &again).await;
    let queued = insert_job(&s.pool, "alpha", "queued", 10).await;
    for (path, want) in [
        (format!("/jobs/{failed}/retry"), StatusCode::OK),
        (format!("/jobs/{done}/replay?reason=again"), StatusCode::OK),
        (format!("/jobs/{queued}/cancel"), StatusCode::OK),
        // Refused by the job's state: nothing changed, the layer's row.
        (format!("/jobs/{done}/retry"), StatusCode::CONFLICT),
    ] {
        let r = s.call(Method::POST, &path, None).await;
        assert_eq!(r.status, want, "{path}: {}", r.text);
    }
    assert_eq!(job_status(&s, &failed).await, "queued");
    assert_eq!(job_status(&s, &queued).await, "failed");
    let r = s.delete(&format!("/projects/{project}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = s.delete(&format!("/connections/{conn}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

    let admin = "token:--api-token-file";
    let want: Vec<(String, String, String, String)> = [
        ("POST /connections", "connection:c1", "201"),
        ("POST /projects", "project:alpha", "201"),
        ("PUT /projects/{id}", "project:alpha", "200"),
        ("PUT /connections/{id}", "connection:c1", "200"),
        ("POST /projects/{name}/pause", "project:alpha", "200"),
        ("POST /projects/{name}/resume", "project:alpha", "200"),
        ("POST /jobs/{id}/retry", "project:alpha", "200"),
        ("POST /jobs/{id}/replay", "project:alpha", "200"),
        ("POST /jobs/{id}/cancel", "project:alpha", "200"),
        ("POST /jobs/{id}/retry", "project:alpha", "409"),
        ("DELETE /projects/{id}", "project:alpha", "204"),
        ("DELETE /connections/{id}", "connection:c1", "204"),
    ]
    .into_iter()
    .map(|(a, t, o)| (admin.into(), a.into(), t.into(), o.into()))
    .collect();
    assert_eq!(trail(&s).await, want);
    // The API's filters: one action, one actor.
    let r = s.get("/audit?action=POST%20/jobs/%7Bid%7D/retry").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let outcomes: Vec<&str> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["409", "200"], "newest first");
    let r = s.get("/audit?actor=token:nobody").await;
    assert_eq!(r.json, serde_json::json!([]), "{}", r.text);
    let all: String =
        sqlx::query_scalar("SELECT coalesce(string_agg(a::text, E'\\n'), '') FROM cpi_audit a")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert!(!all.contains("planted-pw-91"), "{all}");
    s.stop().await;
}

/// The audit row is part of the action's transaction: when it cannot be
/// written, the change does not happen either (before, the change committed
/// and the row was lost with a warning), and the failure is what the trail
/// says.
#[tokio::test]
async fn regression_an_action_whose_audit_row_cannot_be_written_changes_nothing() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    alpha(&s, dir.path(), serde_json::json!({})).await;
    let failed = insert_job(&s.pool, "alpha", "failed", 10).await;
    let file = dir.path().join("f.csv");
    std::fs::write(&file, "a\n1\n").unwrap();
    point_at(&s, &failed, &file).await;
    // From now on a row that says an action succeeded cannot be written.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_success() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.outcome LIKE '2%' THEN RAISE EXCEPTION 'the trail refuses %', NEW.action; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_success BEFORE INSERT ON cpi_audit
            FOR EACH ROW EXECUTE FUNCTION refuse_success();",
    )
    .execute(&s.pool)
    .await
    .unwrap();
    let events_before = count(&s, "SELECT count(*) FROM cpi_events").await;
    let r = s.call(Method::POST, "/projects/alpha/pause", None).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert_eq!(
        count(&s, "SELECT count(*) FROM cpi_project_pauses").await,
        0
    );
    let r = s
        .call(Method::POST, &format!("/jobs/{failed}/retry"), None)
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert_eq!(job_status(&s, &failed).await, "failed");
    assert!(file.is_file());
    let r = s
        .post(
            "/connections",
            serde_json::json!({"name": "c2", "database_url": "postgresql://u@127.0.0.1:1/x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert_eq!(count(&s, "SELECT count(*) FROM cpi_connections").await, 0);
    assert_eq!(
        count(&s, "SELECT count(*) FROM cpi_events").await,
        events_before,
        "no event of a change that did not happen"
    );
    let rows = trail(&s).await;
    let outcomes: Vec<(&str, &str)> = rows
        .iter()
        .skip(1) // the project's creation, before the trigger
        .map(|(_, a, _, o)| (a.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("POST /projects/{name}/pause", "500"),
            ("POST /jobs/{id}/retry", "500"),
            ("POST /connections", "500"),
        ]
    );
    s.stop().await;
}

/// A retry that fails after its change started (the job row requeued, then
/// the file cannot go back: its inbox is gone) rolls back whole: the job
/// stays failed, its file stays set aside, and the one row of the trail
/// says it failed.
#[tokio::test]
async fn a_retry_that_fails_after_its_change_started_is_audited_as_failed() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    let aside = dir.path().join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    alpha(
        &s,
        dir.path(),
        serde_json::json!({"failed_dir": aside.to_str().unwrap()}),
    )
    .await;
    let failed = insert_job(&s.pool, "alpha", "failed", 10).await;
    let file = aside.join("f.csv");
    std::fs::write(&file, "a\n1\n").unwrap();
    point_at(&s, &failed, &file).await;
    std::fs::remove_dir_all(dir.path().join("in")).unwrap();
    let r = s
        .call(Method::POST, &format!("/jobs/{failed}/retry"), None)
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert!(r.error().contains("cannot move"), "{}", r.text);
    assert_eq!(job_status(&s, &failed).await, "failed");
    assert!(file.is_file());
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM cpi_events WHERE kind = 'job.retried'"
        )
        .await,
        0
    );
    let retries: Vec<String> = trail(&s)
        .await
        .into_iter()
        .filter(|(_, a, _, _)| a == "POST /jobs/{id}/retry")
        .map(|(.., o)| o)
        .collect();
    assert_eq!(retries, ["500"]);
    s.stop().await;
}
