//! `/connections`: every route and status code, the ownership rule, the token rules.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::api::{Server, TOKEN};
use cpi::metrics::Health;

#[tokio::test]
async fn create_list_get_update_delete() {
    let s = Server::start().await;
    assert_eq!(s.get("/connections").await.json, json!([]));

    let r = s
        .post(
            "/connections",
            json!({"name": "abc_prod", "description": "ABC", "database_url": "postgresql://u:pw@db/abc"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        format!("/connections/{id}")
    );
    assert_eq!(r.json["name"], "abc_prod");
    assert_eq!(r.json["managed_by"], json!(null));
    assert!(r.json.get("database_url").is_none(), "{}", r.text);

    let list = s.get("/connections").await;
    assert_eq!(list.status, StatusCode::OK);
    let row = &list.json[0];
    for key in [
        "id",
        "name",
        "description",
        "created_at",
        "updated_at",
        "managed_by",
        "source",
    ] {
        assert!(row.get(key).is_some(), "{key} missing in {row}");
    }
    assert!(row.get("database_url").is_none());

    let one = s.get(&format!("/connections/{id}")).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    assert_eq!(one.json["database_url"], "postgresql://u:pw@db/abc");

    let r = s
        .put(
            &format!("/connections/{id}"),
            json!({"name": "abc_prod2", "database_url": "postgres://u@db2/abc"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["name"], "abc_prod2");
    // Left out: kept.
    assert_eq!(r.json["description"], "ABC");
    let one = s.get(&format!("/connections/{id}")).await;
    assert_eq!(one.json["database_url"], "postgres://u@db2/abc");

    // null clears.
    let r = s
        .put(&format!("/connections/{id}"), json!({"description": null}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["description"], json!(null));

    let r = s.delete(&format!("/connections/{id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.text.is_empty());
    assert_eq!(
        s.delete(&format!("/connections/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&format!("/connections/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[tokio::test]
async fn validation_answers_400_and_malformed_bodies_422() {
    let s = Server::start().await;
    for (body, needle) in [
        (
            json!({"name": "", "database_url": "postgres://h/d"}),
            "name",
        ),
        (
            json!({"name": "has space", "database_url": "postgres://h/d"}),
            "name",
        ),
        (
            json!({"name": "x".repeat(256), "database_url": "postgres://h/d"}),
            "name",
        ),
        (
            json!({"name": "ok", "database_url": "mysql://h/d"}),
            "scheme",
        ),
        (json!({"name": "ok", "database_url": "not a url"}), "URL"),
        (
            json!({"name": "ok", "database_url": "postgres://h/d", "description": "a\u{0}b"}),
            "NUL",
        ),
    ] {
        let r = s.post("/connections", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert!(r.error().contains(needle), "{body}: {}", r.text);
    }
    // Several problems are all reported.
    let r = s
        .post(
            "/connections",
            json!({"name": "", "database_url": "ftp://x"}),
        )
        .await;
    assert_eq!(r.json["details"].as_array().unwrap().len(), 2, "{}", r.text);

    // Missing field, unknown field, wrong type: the body does not deserialize.
    for body in [
        json!({"name": "ok"}),
        json!({"name": "ok", "database_url": "postgres://h/d", "extra": 1}),
        json!({"name": 5, "database_url": "postgres://h/d"}),
    ] {
        let r = s.post("/connections", body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.text
        );
        assert!(!r.error().is_empty());
    }
    // Not JSON at all.
    let r = s.call_raw(Method::POST, "/connections", "{nope").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(!r.error().is_empty());
    // No JSON content type.
    let r = s.call(Method::POST, "/connections", None).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.text);
    assert!(r.error().contains("application/json"), "{}", r.text);

    let id = s.connection("ok", "postgres://h/d").await;
    let r = s
        .put(
            &format!("/connections/{id}"),
            json!({"database_url": "http://h"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = s
        .put(&format!("/connections/{id}"), json!({"name": "a b"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    // Malformed ids.
    for (m, p) in [
        (Method::GET, "/connections/not-a-uuid"),
        (Method::DELETE, "/connections/123"),
        (Method::POST, "/connections/xyz/test"),
    ] {
        let r = s.call(m.clone(), p, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{m} {p}: {}", r.text);
        assert!(!r.error().is_empty());
    }
    s.stop().await;
}

#[tokio::test]
async fn duplicate_names_answer_409() {
    let s = Server::start().await;
    s.connection("one", "postgres://h/1").await;
    let two = s.connection("two", "postgres://h/2").await;
    let r = s
        .post(
            "/connections",
            json!({"name": "one", "database_url": "postgres://h/x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.error().contains("already exists"), "{}", r.text);
    let r = s
        .put(&format!("/connections/{two}"), json!({"name": "one"}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn unknown_ids_answer_404() {
    let s = Server::start().await;
    let id = uuid::Uuid::new_v4();
    for (m, p, body) in [
        (Method::GET, format!("/connections/{id}"), None),
        (
            Method::PUT,
            format!("/connections/{id}"),
            Some(json!({"name": "x"})),
        ),
        (Method::DELETE, format!("/connections/{id}"), None),
        (Method::POST, format!("/connections/{id}/test"), None),
    ] {
        let r = s.call(m.clone(), &p, body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {p}: {}", r.text);
        assert!(r.error().contains("does not exist"), "{}", r.text);
    }
    s.stop().await;
}

#[tokio::test]
async fn deleting_a_connection_keeps_its_projects_with_no_connection() {
    let s = Server::start().await;
    let conn = s.connection("c", "postgres://h/d").await;
    let r = s
        .post(
            "/projects",
            json!({"name": "p", "connection_id": conn, "config": {"inbox": "/tmp/in"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let project = r.json["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.delete(&format!("/connections/{conn}")).await.status,
        StatusCode::NO_CONTENT
    );
    let p = s.get(&format!("/projects/{project}")).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.json["connection_id"], json!(null));
    assert_eq!(p.json["connection_name"], json!(null));
    s.stop().await;
}

#[tokio::test]
async fn test_endpoint_reports_success_and_failure_without_the_password() {
    let s = Server::start().await;
    // Trust authentication ignores the password: the connection succeeds.
    let good_url = s.db.url().replacen("postgres@", "postgres:Gd-pw-4471@", 1);
    let good = s.connection("good", &good_url).await;
    let r = s
        .post(&format!("/connections/{good}/test"), json!(null))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"success": true, "message": "Connection successful"})
    );

    // Nothing listens on port 1.
    let bad = s
        .connection("bad", "postgresql://bob:Bd-pw-9923@127.0.0.1:1/x")
        .await;
    let r = s
        .call(Method::POST, &format!("/connections/{bad}/test"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["success"], json!(false));
    let msg = r.json["message"].as_str().unwrap();
    assert!(msg.starts_with("Connection failed"), "{msg}");
    assert!(!r.text.contains("Bd-pw-9923"), "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn test_endpoint_gives_up_after_its_timeout() {
    // A listener that accepts and never answers: the test must not hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let s = Server::start_adjusted(|state| {
        state.connection_test_timeout = std::time::Duration::from_millis(500)
    })
    .await;
    let id = s
        .connection(
            "silent",
            &format!("postgresql://u:Sl-pw-1@127.0.0.1:{port}/x"),
        )
        .await;
    let started = std::time::Instant::now();
    let r = s
        .call(Method::POST, &format!("/connections/{id}/test"), None)
        .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(r.json["success"], json!(false), "{}", r.text);
    assert!(
        r.json["message"].as_str().unwrap().contains("timed out"),
        "{}",
        r.text
    );
    drop(silent);
    s.stop().await;
}

#[tokio::test]
async fn managed_rows_are_read_only_and_name_their_manifest() {
    let s = Server::start().await;
    let id = s
        .managed_connection("from_git", "connections/from_git.yaml")
        .await;
    for (m, body) in [
        (Method::PUT, Some(json!({"description": "changed"}))),
        (Method::DELETE, None),
    ] {
        let r = s.call(m.clone(), &format!("/connections/{id}"), body).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{m}: {}", r.text);
        assert_eq!(r.json["source"], "connections/from_git.yaml");
        assert_eq!(r.json["managed_by"], "cpi");
        assert!(
            r.error().contains("connections/from_git.yaml"),
            "{}",
            r.text
        );
        assert!(r.error().contains("git"), "{}", r.text);
    }
    let one = s.get(&format!("/connections/{id}")).await;
    assert_eq!(one.json["description"], json!(null));
    assert_eq!(one.json["managed_by"], "cpi");
    // Reading and testing are not writes.
    let r = s
        .call(Method::POST, &format!("/connections/{id}/test"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn token_rules() {
    let s = Server::start().await;
    let id = s.connection("c", "postgres://u:pw@h/d").await;
    let guarded = [
        (
            Method::POST,
            "/connections".to_string(),
            Some(json!({"name": "n", "database_url": "postgres://h/d"})),
        ),
        (Method::GET, format!("/connections/{id}"), None),
        (
            Method::PUT,
            format!("/connections/{id}"),
            Some(json!({"name": "n"})),
        ),
        (Method::DELETE, format!("/connections/{id}"), None),
        (Method::POST, format!("/connections/{id}/test"), None),
        (
            Method::POST,
            "/projects".to_string(),
            Some(json!({"name": "p", "config": {}})),
        ),
    ];
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic dGVzdA=="),
        Some(TOKEN),
    ] {
        for (m, p, body) in &guarded {
            let r = s.call_auth(m.clone(), p, body.clone(), auth).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{auth:?} {m} {p}: {}",
                r.text
            );
            assert_eq!(r.headers["www-authenticate"], "Bearer");
            assert!(r.error().contains("Bearer"), "{}", r.text);
        }
    }
    // The scheme is case-insensitive.
    let r = s
        .call_auth(
            Method::GET,
            &format!("/connections/{id}"),
            None,
            Some(&format!("bearer {TOKEN}")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Lists need no token.
    let r = s.call_auth(Method::GET, "/connections", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn without_a_configured_token_guarded_routes_answer_403() {
    let s = Server::start_with(None, Health::new()).await;
    let (id,): (uuid::Uuid,) = sqlx::query_as(
        "INSERT INTO cpi_connections (name, database_url) VALUES ('c', 'postgres://h/d') RETURNING id",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    for (m, p) in [
        (Method::POST, "/connections".to_string()),
        (Method::GET, format!("/connections/{id}")),
        (Method::PUT, format!("/connections/{id}")),
        (Method::DELETE, format!("/connections/{id}")),
        (Method::POST, format!("/connections/{id}/test")),
        (Method::POST, "/projects".to_string()),
    ] {
        let r = s
            .call_auth(m.clone(), &p, Some(json!({})), Some("Bearer anything"))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {p}: {}", r.text);
        assert!(r.error().contains("--api-token-file"), "{}", r.text);
    }
    assert_eq!(s.get("/connections").await.status, StatusCode::OK);
    s.stop().await;
}
