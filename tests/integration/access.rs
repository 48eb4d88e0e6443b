//! Access (issue #26): API tokens made by `cpi token create`, declared as
//! manifests, and checked like every other kind.

use crate::support::bin::{cpi, Run};

/// `cpi token create ci` with an expiry: the run (its stdout the manifest)
/// and the token it printed on stderr.
pub fn create_ci_token() -> (Run, String) {
    let run = cpi(&["token", "create", "ci", "--expires", "2030-01-01T00:00:00Z"]);
    run.assert_code(0);
    let token = run
        .stderr
        .lines()
        .find(|l| l.starts_with("cpi_"))
        .expect("the token on stderr")
        .to_string();
    (run, token)
}

/// The token appears once, on stderr; the manifest on stdout holds its
/// SHA-256 and validates as an ApiToken, alongside a RoleBinding naming it.
#[test]
fn token_create_prints_the_token_once_and_a_manifest_of_its_hash() {
    let (run, token) = create_ci_token();
    assert!(
        !run.stdout.contains(&token),
        "the token is never in the manifest"
    );
    let hash = cpi::access::token::sha256_hex(&token);
    assert!(
        run.stdout.contains(&format!("sha256: {hash}")),
        "{}",
        run.stdout
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ci.yaml"), &run.stdout).unwrap();
    std::fs::write(
        dir.path().join("binding.yaml"),
        "apiVersion: cpi/v1\nkind: RoleBinding\nmetadata:\n  name: ci-ops\nspec:\n  role: operator\n  projects: ['*']\n  subjects: [{token: ci}]\n",
    )
    .unwrap();
    let manifests = dir.path().to_str().unwrap();
    cpi(&["validate", "--manifests", manifests]).assert_code(0);
    // A second create makes another token.
    let again = cpi(&["token", "create", "ci"]);
    assert!(!again.stderr.contains(&token));
    // A bad name is refused before any token is made.
    let bad = cpi(&["token", "create", "no spaces"]);
    assert_ne!(bad.code, 0);
    assert!(!bad.stderr.contains("cpi_"), "{}", bad.stderr);
}

mod enforcement {
    use reqwest::{Method, StatusCode};
    use serde_json::json;

    use crate::support::api::Server;
    use crate::support::db::insert_job;
    use cpi::access::token::{parse_sha256, sha256_hex, KnownToken};
    use cpi::access::{Anonymous, Binding, Permission, Role, Subject};
    use cpi::api::permissions::{Need, Scope, TABLE};

    /// The token of `role` bound to project `project`.
    fn token_of(role: Role, project: &str) -> String {
        format!("t-{role}-{project}")
    }

    fn rules() -> (Vec<KnownToken>, Vec<Binding>) {
        let mut tokens = Vec::new();
        let mut bindings = Vec::new();
        for role in Role::ALL {
            for project in ["alpha", "beta"] {
                let name = format!("{role}-{project}");
                tokens.push(KnownToken {
                    name: name.clone(),
                    sha256: parse_sha256(&sha256_hex(&token_of(role, project))).unwrap(),
                    expires: None,
                });
                bindings.push(Binding {
                    name: name.clone(),
                    role,
                    projects: vec![project.into()],
                    connections: Vec::new(),
                    subjects: vec![Subject::Token(name)],
                });
            }
        }
        (tokens, bindings)
    }

    /// Every management row, as one digest: equal before and after a refused request.
    async fn snapshot(s: &Server) -> String {
        let mut all = String::new();
        for t in [
            "cpi_connections",
            "cpi_projects",
            "cpi_import_jobs",
            "cpi_events",
            "cpi_project_pauses",
        ] {
            // The table names are the constants above.
            let (d,): (Option<String>,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {t} t"
            )))
            .fetch_one(&s.pool)
            .await
            .unwrap();
            all.push_str(&d.unwrap_or_default());
        }
        all
    }

    /// Generated from the route table: every route × role × project scope
    /// (a token bound to the target's project, or to another one). Allowed:
    /// the handler answers (not 401/403). Denied: 403 naming the missing
    /// permission, and no row changed.
    #[tokio::test]
    async fn every_route_by_role_and_scope() {
        let s = Server::start_adjusted(|st| {
            st.inbox_roots = std::sync::Arc::new(vec!["/".into()]);
            st.http.anonymous = Anonymous::None;
            let (tokens, bindings) = rules();
            st.access.set(tokens, bindings);
        })
        .await;
        let (conn,): (uuid::Uuid,) = sqlx::query_as(
            "INSERT INTO cpi_connections (name, database_url) VALUES ('c_alpha', 'postgresql://u@127.0.0.1:1/x') RETURNING id",
        )
        .fetch_one(&s.pool)
        .await
        .unwrap();
        let (project,): (uuid::Uuid,) = sqlx::query_as(
            "INSERT INTO cpi_projects (name, connection_id, config) VALUES ('alpha', $1, '{\"name\":\"alpha\",\"inbox\":\"/tmp/cpi-access-alpha\"}') RETURNING id",
        )
        .bind(conn)
        .fetch_one(&s.pool)
        .await
        .unwrap();
        let job = insert_job(&s.pool, "alpha", "failed", 5).await;
        // Deletes last (connection before project, which it blocks), so
        // every other route finds its rows.
        let mut routes: Vec<_> = TABLE.iter().collect();
        routes.sort_by_key(|(m, p, _)| match (*m, *p) {
            ("delete", p) if p.starts_with("/projects") => 2,
            ("delete", _) => 1,
            _ => 0,
        });
        let mut checked = 0;
        for (method, template, need) in routes {
            let Need::Permission(permission, scope) = *need else {
                continue;
            };
            let id = if template.starts_with("/connections") {
                conn.to_string()
            } else if template.starts_with("/projects") {
                project.to_string()
            } else if template.starts_with("/jobs") {
                job.clone()
            } else {
                uuid::Uuid::new_v4().to_string()
            };
            let mut path = template.replace("{id}", &id).replace("{name}", "alpha");
            if scope == Scope::ProjectQuery {
                path.push_str("?project=alpha");
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = matches!(*method, "post" | "put").then(|| json!({}));
            // Another project's token first: the target's rows still exist.
            for bound in ["beta", "alpha"] {
                for role in Role::ALL {
                    let expected = role.grants(permission)
                        && match scope {
                            Scope::Any => true,
                            Scope::Everything => false,
                            _ => bound == "alpha",
                        };
                    let before = snapshot(&s).await;
                    let auth = format!("Bearer {}", token_of(role, bound));
                    let r = s
                        .call_auth(m.clone(), &path, body.clone(), Some(&auth))
                        .await;
                    let what = format!(
                        "{method} {path} as {role} of {bound}: {} {}",
                        r.status, r.text
                    );
                    if expected {
                        assert!(
                            r.status != StatusCode::FORBIDDEN
                                && r.status != StatusCode::UNAUTHORIZED,
                            "allowed, but {what}"
                        );
                    } else {
                        assert_eq!(r.status, StatusCode::FORBIDDEN, "denied, but {what}");
                        assert!(
                            r.error().contains(&format!("\"{}\"", permission.as_str())),
                            "the missing permission is named: {what}"
                        );
                        assert_eq!(
                            before,
                            snapshot(&s).await,
                            "a refused request changed rows: {what}"
                        );
                    }
                    checked += 1;
                }
            }
            // No token at all, with --anonymous none: 401, nothing changed.
            let before = snapshot(&s).await;
            let r = s.call_auth(m.clone(), &path, body.clone(), None).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} anonymous: {}",
                r.text
            );
            assert_eq!(before, snapshot(&s).await);
        }
        assert!(checked >= 6 * 20, "{checked} cases");
        // Public routes answer everyone.
        for path in ["/healthz", "/metrics", "/openapi.json"] {
            assert_eq!(
                s.call_auth(Method::GET, path, None, None).await.status,
                StatusCode::OK,
                "{path}"
            );
        }
        s.stop().await;
    }

    /// A viewer never sees a database_url or row values; an unknown or
    /// expired token is 401; `--anonymous viewer` reads but never writes.
    #[tokio::test]
    async fn viewers_see_no_secrets_and_bad_tokens_are_refused() {
        let s = Server::start_adjusted(|st| {
            let (mut tokens, bindings) = rules();
            tokens.push(KnownToken {
                name: "old".into(),
                sha256: parse_sha256(&sha256_hex("t-old")).unwrap(),
                expires: Some("2020-01-01T00:00:00Z".parse().unwrap()),
            });
            st.access.set(tokens, bindings);
            st.http.anonymous = Anonymous::Viewer;
        })
        .await;
        let job = insert_job(&s.pool, "alpha", "failed", 5).await;
        sqlx::query(
            "UPDATE cpi_import_jobs SET error = 'row 3: planted-row-value' WHERE id = $1::uuid",
        )
        .bind(&job)
        .execute(&s.pool)
        .await
        .unwrap();
        let viewer = format!("Bearer {}", token_of(Role::Viewer, "alpha"));
        let admin = format!("Bearer {}", token_of(Role::Admin, "alpha"));
        for auth in [Some(viewer.as_str()), None] {
            let r = s
                .call_auth(Method::GET, &format!("/jobs/{job}"), None, auth)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            assert!(!r.text.contains("planted-row-value"), "{}", r.text);
            let r = s.call_auth(Method::GET, "/jobs", None, auth).await;
            assert!(!r.text.contains("planted-row-value"), "{}", r.text);
        }
        let r = s
            .call_auth(Method::GET, &format!("/jobs/{job}"), None, Some(&admin))
            .await;
        assert!(r.text.contains("planted-row-value"), "{}", r.text);
        let r = s
            .call_auth(Method::GET, "/jobs", None, Some("Bearer nope"))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = s
            .call_auth(Method::GET, "/jobs", None, Some("Bearer t-old"))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.error().contains("expired"), "{}", r.text);
        let r = s
            .call_auth(Method::POST, "/projects/alpha/pause", None, None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        // The --api-token-file token is still admin.
        let r = s.get(&format!("/jobs/{job}")).await;
        assert!(r.text.contains("planted-row-value"), "{}", r.text);
        let _ = Permission::Read;
        s.stop().await;
    }

    /// A caller bound to some projects lists only their jobs (and pages and
    /// counts them so); one who may read every project lists every job,
    /// of deleted projects too.
    #[tokio::test]
    async fn the_jobs_list_holds_only_the_callers_projects() {
        let s = Server::start_adjusted(|st| {
            st.http.anonymous = Anonymous::None;
            let (tokens, bindings) = rules();
            st.access.set(tokens, bindings);
        })
        .await;
        for p in ["alpha", "beta"] {
            sqlx::query("INSERT INTO cpi_projects (name, config) VALUES ($1, '{}')")
                .bind(p)
                .execute(&s.pool)
                .await
                .unwrap();
        }
        for (p, n) in [("alpha", 2), ("beta", 3), ("gone", 1)] {
            for i in 0..n {
                insert_job(&s.pool, p, "succeeded", i).await;
            }
        }
        let list = |auth: String| {
            let s = &s;
            async move {
                let r = s.call_auth(Method::GET, "/jobs", None, Some(&auth)).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
                let mut projects: Vec<String> = r.json["jobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|j| j["project_name"].as_str().unwrap().to_string())
                    .collect();
                projects.dedup();
                (r.json["total"].as_i64().unwrap(), projects)
            }
        };
        let viewer = format!("Bearer {}", token_of(Role::Viewer, "alpha"));
        assert_eq!(list(viewer).await, (2, vec!["alpha".to_string()]));
        let operator = format!("Bearer {}", token_of(Role::Operator, "beta"));
        assert_eq!(list(operator).await, (3, vec!["beta".to_string()]));
        // Asking for another project's jobs by name finds none.
        let viewer = format!("Bearer {}", token_of(Role::Viewer, "alpha"));
        let r = s
            .call_auth(Method::GET, "/jobs?project=beta", None, Some(&viewer))
            .await;
        assert_eq!(r.json["total"], 0, "{}", r.text);
        // The --api-token-file token reads everything.
        let admin = format!("Bearer {}", crate::support::api::TOKEN);
        assert_eq!(list(admin).await.0, 6);
    }
}

/// `cpi serve --api-token-file` without `--anonymous`: anonymous reads are
/// refused (the default once a token is configured); health stays open.
#[tokio::test]
async fn serve_with_a_token_defaults_to_no_anonymous_access() {
    use crate::support::bin::cpi_command;
    let db = crate::support::TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "legacy-admin-token\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = cpi_command()
        .args(["serve", "--listen", &addr, "--database-url", &db.url()])
        .arg("--api-token-file")
        .arg(&token_file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let mut health = None;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            health = Some(r.status());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(health, Some(reqwest::StatusCode::OK));
    let r = http.get(format!("{base}/projects")).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    let r = http
        .get(format!("{base}/projects"))
        .bearer_auth("legacy-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let _ = child.kill();
    let _ = child.wait();
}

/// The audit trail: every action and every refusal with its actor, target
/// and outcome; no secret anywhere in the table; `GET /audit` for admins of
/// every project only; pruned with the history.
#[tokio::test]
async fn the_audit_trail_names_actors_and_holds_no_secret() {
    use cpi::access::token::{parse_sha256, sha256_hex, KnownToken};
    use cpi::access::{Binding, Role, Subject};
    use reqwest::{Method, StatusCode};
    let tokens = [
        ("ops", Role::Operator, "alpha"),
        ("view", Role::Viewer, "alpha"),
        ("boss", Role::Admin, "alpha"),
    ];
    let s = crate::support::api::Server::start_adjusted(|st| {
        st.inbox_roots = std::sync::Arc::new(vec!["/".into()]);
        st.access.set(
            tokens
                .iter()
                .map(|(n, _, _)| KnownToken {
                    name: n.to_string(),
                    sha256: parse_sha256(&sha256_hex(&format!("secret-token-{n}"))).unwrap(),
                    expires: None,
                })
                .collect(),
            tokens
                .iter()
                .map(|(n, role, p)| Binding {
                    name: n.to_string(),
                    role: *role,
                    projects: vec![p.to_string()],
                    connections: Vec::new(),
                    subjects: vec![Subject::Token(n.to_string())],
                })
                .collect(),
        );
    })
    .await;
    let bearer = |n: &str| format!("Bearer secret-token-{n}");
    let planted = "planted-pw-7f3e";
    let r = s
        .call(
            Method::POST,
            "/connections",
            Some(serde_json::json!({"name": "c1", "database_url": format!("postgresql://u:{planted}@127.0.0.1:1/x")})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let conn = r.json["id"].as_str().unwrap().to_string();
    let r = s
        .call(
            Method::POST,
            "/projects",
            Some(serde_json::json!({"name": "alpha", "connection_id": conn, "config": {"inbox": "/tmp/cpi-audit-alpha"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = s
        .call_auth(
            Method::POST,
            "/projects/alpha/pause?reason=x",
            None,
            Some(&bearer("ops")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s
        .call_auth(
            Method::POST,
            "/projects/alpha/resume",
            None,
            Some(&bearer("view")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = s
        .call_auth(
            Method::GET,
            &format!("/connections/{conn}"),
            None,
            Some(&bearer("ops")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    // An admin of one project is not an auditor; the --api-token-file token is.
    let r = s
        .call_auth(Method::GET, "/audit", None, Some(&bearer("boss")))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.error().contains("\"audit\""), "{}", r.text);
    let r = s.get("/audit").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rows = r.json.as_array().unwrap();
    let find = |actor: &str, action: &str| {
        rows.iter()
            .find(|e| e["actor"] == actor && e["action"] == action)
            .unwrap_or_else(|| panic!("no {actor} {action} in {rows:?}"))
    };
    let e = find("token:ops", "POST /projects/{name}/pause");
    assert_eq!(
        (e["target"].as_str(), e["outcome"].as_str()),
        (Some("project:alpha"), Some("200"))
    );
    assert_eq!(e["source"], "127.0.0.1");
    let e = find("token:view", "POST /projects/{name}/resume");
    assert_eq!(e["outcome"], "403");
    let e = find("token:ops", "GET /connections/{id}");
    assert_eq!(
        (e["target"].as_str(), e["outcome"].as_str()),
        (Some("connection:c1"), Some("403"))
    );
    let e = find("token:--api-token-file", "POST /connections");
    assert_eq!(e["outcome"], "201");
    find("token:boss", "GET /audit");
    // Plain reads that were allowed are not actions.
    assert!(!rows
        .iter()
        .any(|e| e["action"] == "GET /audit" && e["outcome"] == "200"));
    // Planted secrets: no password, no token, anywhere in the table.
    let (all,): (String,) =
        sqlx::query_as("SELECT coalesce(string_agg(a::text, '\n'), '') FROM cpi_audit a")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert!(!all.is_empty());
    for secret in [
        planted,
        "secret-token-ops",
        "secret-token-view",
        "secret-token-boss",
        crate::support::api::TOKEN,
    ] {
        assert!(!all.contains(secret), "{secret} in the audit trail:\n{all}");
    }
    // The same trail from the command line.
    let run = cpi(&["audit", "list", "-o", "json", "--database-url", &s.db.url()]);
    run.assert_code(0);
    let listed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["actor"] == "token:ops" && e["outcome"] == "200"));
    let text = cpi(&["audit", "list", "--database-url", &s.db.url()]);
    text.assert_code(0)
        .assert_stdout("POST /projects/{name}/pause");
    // Retention: pruned with the jobs and runs.
    let p = cpi::daemon::prune::prune(&s.pool, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(p.audit >= 5, "{p:?}");
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM cpi_audit")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    s.stop().await;
}
