//! Every list route answers a caller bound to some projects with those
//! projects' rows only, and counts them so (issue #26); an admin of every
//! project sees every row.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::api::{Server, TOKEN};
use crate::support::db::insert_job;
use cpi::access::token::{parse_sha256, sha256_hex, KnownToken};
use cpi::access::{Anonymous, Binding, Role, Subject};

const ALPHA: &str = "t-viewer-alpha";

/// A viewer of project `alpha`, granted connection `c_extra` besides.
fn rules() -> (Vec<KnownToken>, Vec<Binding>) {
    let tokens = vec![KnownToken {
        name: "alpha".into(),
        sha256: parse_sha256(&sha256_hex(ALPHA)).unwrap(),
        expires: None,
    }];
    let bindings = vec![Binding {
        name: "alpha".into(),
        role: Role::Viewer,
        projects: vec!["alpha".into()],
        connections: vec!["c_extra".into()],
        subjects: vec![Subject::Token("alpha".into())],
    }];
    (tokens, bindings)
}

async fn seed(s: &Server) {
    let config = |name: &str| {
        serde_json::json!({
            "name": name,
            "inbox": format!("/tmp/cpi-lists-{name}"),
            "defaults": {"table": "t", "mode": "append", "freshness": {"warn_after": "1h", "error_after": "2h"}},
        })
    };
    for c in ["c_alpha", "c_beta", "c_extra", "c_other"] {
        sqlx::query("INSERT INTO cpi_connections (name, database_url) VALUES ($1, 'postgresql://u@127.0.0.1:1/x')")
            .bind(c)
            .execute(&s.pool)
            .await
            .unwrap();
    }
    for (p, c) in [("alpha", "c_alpha"), ("beta", "c_beta")] {
        sqlx::query(
            "INSERT INTO cpi_projects (name, connection_id, config)
             SELECT $1, id, $3 FROM cpi_connections WHERE name = $2",
        )
        .bind(p)
        .bind(c)
        .bind(config(p))
        .execute(&s.pool)
        .await
        .unwrap();
    }
    for (p, n) in [("alpha", 2), ("beta", 3)] {
        for i in 0..n {
            insert_job(&s.pool, p, "failed", 60 + i).await;
        }
    }
    sqlx::query(
        "INSERT INTO cpi_events (kind, severity, project) VALUES
           ('import.failed', 'error', 'alpha'), ('import.failed', 'error', 'beta'),
           ('import.failed', 'error', 'beta'), ('reconcile.failed', 'error', NULL)",
    )
    .execute(&s.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO cpi_reconcile_runs (owner, trigger, status, drifted, finished_at)
         VALUES ('cpi', 'cli', 'succeeded', 1, now())",
    )
    .execute(&s.pool)
    .await
    .unwrap();
}

async fn get(s: &Server, path: &str, token: &str) -> Value {
    let r = s
        .call_auth(Method::GET, path, None, Some(&format!("Bearer {token}")))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    r.json
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[key].as_str().unwrap_or("(none)").to_string())
        .collect();
    out.sort();
    out
}

fn sum(buckets: &Value, key: &str) -> i64 {
    buckets
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[key].as_i64().unwrap())
        .sum()
}

#[tokio::test]
async fn regression_every_list_holds_only_the_callers_projects() {
    let s = Server::start_adjusted(|st| {
        st.http.anonymous = Anonymous::None;
        let (tokens, bindings) = rules();
        st.access.set(tokens, bindings);
    })
    .await;
    seed(&s).await;

    // Connections: those alpha's projects use, plus the binding's explicit one.
    let c = get(&s, "/connections", ALPHA).await;
    assert_eq!(strings(&c, "name"), ["c_alpha", "c_extra"]);
    let c = get(&s, "/connections", TOKEN).await;
    assert_eq!(
        strings(&c, "name"),
        ["c_alpha", "c_beta", "c_extra", "c_other"]
    );
    // The page is cut after the filter.
    let c = get(&s, "/connections?limit=1&offset=1", ALPHA).await;
    assert_eq!(strings(&c, "name"), ["c_extra"]);

    let f = get(&s, "/freshness", ALPHA).await;
    assert_eq!(strings(&f, "project"), ["alpha"]);
    let f = get(&s, "/freshness", TOKEN).await;
    assert_eq!(strings(&f, "project"), ["alpha", "beta"]);
    let f = get(&s, "/freshness?project=beta", ALPHA).await;
    assert_eq!(f, serde_json::json!([]), "another project's by name: none");

    let e = get(&s, "/events", ALPHA).await;
    assert_eq!(
        strings(&e, "project"),
        ["alpha"],
        "no other project's, none of no project"
    );
    let e = get(&s, "/events", TOKEN).await;
    assert_eq!(strings(&e, "project"), ["(none)", "alpha", "beta", "beta"]);
    let e = get(&s, "/events?project=beta", ALPHA).await;
    assert_eq!(e, serde_json::json!([]));

    let st = get(&s, "/stats/imports?days=1", ALPHA).await;
    assert_eq!(sum(&st["buckets"], "files"), 2, "{st}");
    assert_eq!(sum(&st["buckets"], "failed"), 2);
    assert_eq!(st["failed_last_24h"], 2);
    let st = get(&s, "/stats/imports?days=1", TOKEN).await;
    assert_eq!(sum(&st["buckets"], "files"), 5, "{st}");
    assert_eq!(st["failed_last_24h"], 5);

    // Runs span every project: only callers who read every project see them.
    let r = get(&s, "/reconcile/runs", ALPHA).await;
    assert_eq!(
        (r["total"].as_i64(), r["runs"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );
    assert_eq!(r["drifted_total"], 0);
    let r = get(&s, "/reconcile/runs", TOKEN).await;
    assert_eq!(r["total"], 1);
    let id = r["runs"][0]["id"].as_str().unwrap().to_string();
    let detail = s
        .call_auth(
            Method::GET,
            &format!("/reconcile/runs/{id}"),
            None,
            Some(&format!("Bearer {ALPHA}")),
        )
        .await;
    assert_eq!(detail.status, StatusCode::FORBIDDEN, "{}", detail.text);
    assert!(detail.text.contains("every project"), "{}", detail.text);

    // The lists filtered before: still so.
    let p = get(&s, "/projects", ALPHA).await;
    assert_eq!(strings(&p, "name"), ["alpha"]);
    let j = get(&s, "/jobs", ALPHA).await;
    assert_eq!(j["total"], 2);
}
