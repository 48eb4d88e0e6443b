//! `/projects`: every route and status code, config validation like a
//! manifest's, the legacy hint, the ownership rule.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::api::Server;

#[tokio::test]
async fn create_list_get_update_delete() {
    let s = Server::start().await;
    let conn = s.connection("c1", "postgres://h/d").await;
    let config = json!({
        "inbox": "/srv/in/abc",
        "defaults": {"file_pattern": "*.csv", "primary_key": "id"},
        "tables": [{"file_pattern": "orders_*.csv", "table": "sales.orders", "primary_key": ["order_id"], "mode": "upsert"}]
    });
    let r = s
        .post(
            "/projects",
            json!({"name": "abc", "description": "ABC", "connection_id": conn, "config": config}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        format!("/projects/{id}")
    );
    assert_eq!(r.json["connection_id"], json!(conn));
    assert_eq!(r.json["connection_name"], "c1");
    assert_eq!(r.json["managed_by"], json!(null));
    // Stored as a manifest's config would be: with the project's name.
    assert_eq!(r.json["config"]["name"], "abc");
    assert_eq!(r.json["config"]["tables"][0]["table"], "sales.orders");

    let list = s.get("/projects").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json.as_array().unwrap().len(), 1);
    assert_eq!(list.json[0]["name"], "abc");
    // No token needed to read a project.
    let one = s
        .call_auth(Method::GET, &format!("/projects/{id}"), None, None)
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json["description"], "ABC");

    // A rename carries into config.name; left-out fields are kept.
    let r = s
        .put(&format!("/projects/{id}"), json!({"name": "abc2"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["config"]["name"], "abc2");
    assert_eq!(r.json["config"]["inbox"], "/srv/in/abc");
    assert_eq!(r.json["connection_id"], json!(conn));

    let r = s
        .put(
            &format!("/projects/{id}"),
            json!({"connection_id": null, "description": null, "config": {"inbox": "/other"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["connection_id"], json!(null));
    assert_eq!(r.json["description"], json!(null));
    assert_eq!(r.json["config"], json!({"name": "abc2", "inbox": "/other"}));

    assert_eq!(
        s.delete(&format!("/projects/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    for m in [Method::GET, Method::DELETE] {
        let r = s.call(m, &format!("/projects/{id}"), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    }
    let r = s
        .put(&format!("/projects/{id}"), json!({"name": "x"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn config_is_validated_like_a_manifest() {
    let s = Server::start().await;
    for (config, needle) in [
        (json!({"inbox": "/in", "nope": 1}), "unknown field"),
        (json!({"name": "other"}), "differs"),
        (json!({"defaults": {"mode": "upsert"}}), "primary_key"),
        (json!({"defaults": {"mode": "sideways"}}), "sideways"),
        (json!("a string"), "object"),
        (json!({"settle_seconds": -1}), "settle_seconds"),
    ] {
        let r = s
            .post("/projects", json!({"name": "p", "config": config.clone()}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{config}: {}", r.text);
        assert!(r.text.contains(needle), "{config}: {}", r.text);
    }
    // Every shape problem at once, each by its path, with what was meant:
    // the console puts each beside its field.
    let r = s
        .post(
            "/projects",
            json!({"name": "p", "config": {"tables": [{"table": "t", "mode": "upsret", "primary_kye": "id"}]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(
        r.text
            .contains("config.tables[0].mode: unknown variant `upsret`")
            && r.text.contains("did you mean `upsert`")
            && r.text
                .contains("config.tables[0].primary_kye: unknown field")
            && r.text.contains("did you mean `primary_key`"),
        "{}",
        r.text
    );
    let r = s
        .post("/projects", json!({"name": "bad name", "config": {}}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = s.post("/projects", json!({"name": "p"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = s.call_raw(Method::POST, "/projects", "[1,").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    let id = s.project("p").await;
    let r = s
        .put(
            &format!("/projects/{id}"),
            json!({"config": {"tables": [{"mode": "sync"}]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = s
        .put(&format!("/projects/{id}"), json!({"bogus": true}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn legacy_env_var_is_rejected_with_the_migration_hint() {
    let s = Server::start().await;
    for body in [
        json!({"name": "old", "config": {"connection": {"env_var": "ABC_DATABASE_URL"}}}),
        json!({"name": "old", "connection": {"env_var": "ABC_DATABASE_URL"}, "config": {}}),
    ] {
        let r = s.post("/projects", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert!(r.error().contains("ABC_DATABASE_URL"), "{}", r.text);
        assert!(r.error().contains("convert-legacy"), "{}", r.text);
    }
    let id = s.project("p").await;
    let r = s
        .put(
            &format!("/projects/{id}"),
            json!({"config": {"connection": {"env_var": "X_URL"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.error().contains("convert-legacy"), "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn connection_id_must_exist() {
    let s = Server::start().await;
    let missing = uuid::Uuid::new_v4();
    let r = s
        .post(
            "/projects",
            json!({"name": "p", "connection_id": missing, "config": {}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.error().contains("connection_id"), "{}", r.text);
    let id = s.project("p").await;
    let r = s
        .put(
            &format!("/projects/{id}"),
            json!({"connection_id": missing}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn duplicate_names_answer_409() {
    let s = Server::start().await;
    s.post("/projects", json!({"name": "a", "config": {}}))
        .await;
    let r = s
        .post("/projects", json!({"name": "b", "config": {}}))
        .await;
    let b = r.json["id"].as_str().unwrap().to_string();
    let r = s
        .post("/projects", json!({"name": "a", "config": {}}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let r = s.put(&format!("/projects/{b}"), json!({"name": "a"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn managed_projects_are_read_only_and_name_their_manifest() {
    let s = Server::start().await;
    let (id,): (uuid::Uuid,) = sqlx::query_as(
        "INSERT INTO cpi_projects (name, config, managed_by, source)
         VALUES ('from_git', '{\"name\": \"from_git\"}', 'cpi', 'projects/from_git.yaml') RETURNING id",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    for (m, body) in [
        (Method::PUT, Some(json!({"description": "changed"}))),
        (Method::DELETE, None),
    ] {
        let r = s.call(m.clone(), &format!("/projects/{id}"), body).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{m}: {}", r.text);
        assert_eq!(r.json["source"], "projects/from_git.yaml");
        assert!(r.error().contains("projects/from_git.yaml"), "{}", r.text);
    }
    let one = s.get(&format!("/projects/{id}")).await;
    assert_eq!(one.json["description"], json!(null));
    s.stop().await;
}

#[tokio::test]
async fn malformed_ids_answer_400() {
    let s = Server::start().await;
    for (m, p) in [
        (Method::GET, "/projects/nope"),
        (Method::PUT, "/projects/nope"),
        (Method::DELETE, "/projects/nope"),
    ] {
        let r = s.call(m.clone(), p, Some(json!({}))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{m} {p}: {}", r.text);
    }
    s.stop().await;
}
