//! The served OpenAPI document is valid OpenAPI 3 and matches the router.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::api::Server;

/// DESIGN §7's routes, plus the document itself.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/connections"),
    ("POST", "/connections"),
    ("GET", "/connections/{id}"),
    ("PUT", "/connections/{id}"),
    ("DELETE", "/connections/{id}"),
    ("POST", "/connections/{id}/test"),
    ("GET", "/projects"),
    ("POST", "/projects"),
    ("GET", "/projects/{id}"),
    ("PUT", "/projects/{id}"),
    ("DELETE", "/projects/{id}"),
    ("GET", "/jobs"),
    ("GET", "/jobs/{id}"),
    ("GET", "/jobs/{id}/rejected"),
    ("POST", "/jobs/{id}/retry"),
    ("POST", "/jobs/{id}/replay"),
    ("POST", "/jobs/{id}/cancel"),
    ("POST", "/jobs/retry"),
    ("POST", "/projects/{name}/pause"),
    ("POST", "/projects/{name}/resume"),
    ("POST", "/projects/{name}/check"),
    ("GET", "/freshness"),
    ("GET", "/reconcile/runs"),
    ("GET", "/reconcile/runs/{id}"),
    ("GET", "/stats/imports"),
    ("GET", "/audit"),
    ("GET", "/events"),
    ("POST", "/hooks/{receiver}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/auth/login"),
    ("GET", "/auth/callback"),
    ("POST", "/auth/logout"),
    ("GET", "/auth/me"),
];

/// Every `$ref` in the document points at something that exists.
fn check_refs(doc: &Value, v: &Value, at: &str) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref") {
                let pointer = r
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("{at}: external $ref {r}"));
                assert!(doc.pointer(pointer).is_some(), "{at}: dangling $ref {r}");
            }
            for (k, v) in o {
                check_refs(doc, v, &format!("{at}/{k}"));
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                check_refs(doc, v, &format!("{at}/{i}"));
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_and_matches_the_routes() {
    let s = Server::start().await;
    let r = s.call_auth(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type().starts_with("application/json"));

    let spec = oas3::from_json(&r.text).expect("the document parses as OpenAPI 3.1");
    spec.validate_version()
        .expect("a supported OpenAPI version");
    let doc = &r.json;
    check_refs(doc, doc, "#");

    let mut documented = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, method, op) in spec.operations() {
        documented.insert((method.to_string(), path.clone()));
        let id = op
            .operation_id
            .clone()
            .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(
            operation_ids.insert(id.clone()),
            "duplicate operationId {id}"
        );
        assert!(
            op.responses.as_ref().is_some_and(|r| !r.is_empty()),
            "{method} {path}: no responses"
        );
        // Every `{param}` of the path is declared as a path parameter.
        let declared: Vec<String> = doc["paths"][&path][method.as_str().to_lowercase()]
            ["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        for seg in path.split('/').filter(|s| s.starts_with('{')) {
            let name = seg.trim_matches(|c| c == '{' || c == '}');
            assert!(
                declared.iter().any(|d| d == name),
                "{method} {path}: {name} not declared"
            );
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected);

    // Every link names an operation that exists (tools follow them).
    let mut links = 0;
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            for resp in op["responses"]
                .as_object()
                .into_iter()
                .flat_map(|r| r.values())
            {
                for (name, link) in resp["links"].as_object().into_iter().flatten() {
                    links += 1;
                    let target = link["operationId"]
                        .as_str()
                        .unwrap_or_else(|| panic!("link {name}: no operationId: {link}"));
                    assert!(
                        operation_ids.contains(target),
                        "link {name}: unknown operation {target}"
                    );
                    assert!(link.get("operation_id").is_none(), "{link}");
                }
            }
        }
    }
    assert!(links >= 7, "{links} links");

    // Every documented operation is routed: the router answers neither
    // 405 nor its "no route" 404 to any of them.
    let id = uuid::Uuid::new_v4().to_string();
    for (method, path) in &documented {
        let concrete = path.replace("{id}", &id);
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let r = s.call(m, &concrete, Some(serde_json::json!({}))).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !r.text.contains("no route for"),
            "{method} {path}: {}",
            r.text
        );
    }
    // And something undocumented is not.
    let r = s.get("/connections/x/y").await;
    assert!(r.error().contains("no route for"), "{}", r.text);

    // The guarded operations say so.
    for (m, p) in [
        ("post", "/connections"),
        ("get", "/connections/{id}"),
        ("put", "/projects/{id}"),
        ("post", "/jobs/{id}/retry"),
        ("post", "/jobs/{id}/replay"),
    ] {
        assert_eq!(
            doc["paths"][p][m]["security"][0]["bearer"],
            serde_json::json!([]),
            "{m} {p}"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    s.stop().await;
}
