//! Single sign-on for the console (issue #26) against a real OpenID Connect
//! provider on loopback (npm's `oidc-provider`, support/oidc.rs), driven in
//! a real headless Chromium: sign in, see only the bound projects, retry
//! allowed for an operator (by group), connection detail refused for a
//! viewer (by user), sign out; CSRF without the token refused; the audit
//! trail names the SSO users and holds no secret.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cpi::access::{Anonymous, Binding, Role, Subject};
use cpi::api::oidc::{Oidc, OidcSettings};
use cpi::api::session::{Sso, DEFAULT_SESSION_TTL};
use cpi::api::AppState;
use cpi::metrics::Health;
use cpi::secret::Secret;
use fantoccini::{Client, Locator};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::console::{browser, chromium, start_driver};
use crate::support::api::{Server, TOKEN};
use crate::support::oidc::Provider;
use crate::support::TestDb;

const CLIENT: &str = "cpi-console";
const CLIENT_SECRET: &str = "Planted-client-secret-5s0c3";
const PLANTED_PW: &str = "Planted-Pw-ss0-7a1";

fn bindings() -> Vec<Binding> {
    vec![
        Binding {
            name: "team-alpha-operates".into(),
            role: Role::Operator,
            projects: vec!["alpha-*".into()],
            connections: vec![],
            subjects: vec![Subject::Group("team-alpha".into())],
        },
        Binding {
            name: "bob-views".into(),
            role: Role::Viewer,
            projects: vec!["alpha-one".into()],
            connections: vec![],
            subjects: vec![Subject::User("bob@example.com".into())],
        },
    ]
}

struct Setup {
    server: Server,
    _provider: Provider,
    base: String,
    connection: String,
    job: String,
    _files: tempfile::TempDir,
}

async fn setup() -> Setup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let provider = Provider::start(
        CLIENT,
        CLIENT_SECRET,
        &format!("{base}/auth/callback"),
        &json!({
            "alice": {"email": "alice@example.com", "groups": ["team-alpha"]},
            "bob": {"email": "bob@example.com", "groups": ["team-beta"]},
        }),
    );
    let db = TestDb::new().await;
    let pool = cpi::store::connect(&Secret::new(db.url())).await.unwrap();
    cpi::store::migrate(&pool).await.unwrap();
    let mut state = AppState::new(
        pool.clone(),
        Some(Secret::new(TOKEN)),
        Arc::new(Health::new()),
    );
    state.http.anonymous = Anonymous::Auto;
    state.access.set(vec![], bindings());
    state.sso = Some(Arc::new(Sso {
        oidc: Oidc::new(OidcSettings {
            issuer: provider.issuer.clone(),
            client_id: CLIENT.into(),
            client_secret: Some(Secret::new(CLIENT_SECRET)),
            groups_claim: "groups".into(),
            redirect_url: format!("{base}/auth/callback"),
        })
        .unwrap(),
        origin: base.clone(),
        secure: false,
        session_ttl: DEFAULT_SESSION_TTL,
    }));
    let server = Server::serve_on(listener, db, pool.clone(), state).await;
    let connection = server
        .connection(
            "c_alpha",
            &format!("postgresql://importer:{PLANTED_PW}@127.0.0.1:1/x"),
        )
        .await;
    for name in ["alpha-one", "beta-two"] {
        sqlx::query(
            "INSERT INTO cpi_projects (name, connection_id, config) VALUES ($1, $2::uuid, '{}')",
        )
        .bind(name)
        .bind(&connection)
        .execute(&pool)
        .await
        .unwrap();
    }
    // A failed job whose file is still where it was read: a retry queues it.
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("orders.csv");
    std::fs::write(&file, "id\n1\n").unwrap();
    let (job,): (uuid::Uuid,) = sqlx::query_as(
        "INSERT INTO cpi_import_jobs (project_name, file_name, file_path, status, error, finished_at)
         VALUES ('alpha-one', 'orders.csv', $1, 'failed', 'bad row', now()) RETURNING id",
    )
    .bind(file.to_str().unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    Setup {
        server,
        _provider: provider,
        base,
        connection,
        job: job.to_string(),
        _files: files,
    }
}

async fn wait_css_text(c: &Client, css: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                if t.contains(needle) {
                    return t;
                }
            }
        }
        if Instant::now() > deadline {
            let url = c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let body = c
                .find(Locator::Css("body"))
                .await
                .ok()
                .map(|b| async move { b.text().await.unwrap_or_default() });
            let body = match body {
                Some(f) => f.await,
                None => String::new(),
            };
            panic!("{css} never contained {needle:?} at {url}: {body}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn visible(c: &Client, css: &str) -> bool {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

/// Signs `user` in through the provider's login form.
async fn sign_in(c: &Client, base: &str, user: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    wait_css_text(c, "#sso-login", "Sign in").await;
    c.find(Locator::Css("#sso-login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let login = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("input[name=login]"))
        .await
        .unwrap();
    login.send_keys(user).await.unwrap();
    c.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys("any-password")
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css_text(c, "#sso-user", &format!("{user}@example.com")).await;
    assert!(c.current_url().await.unwrap().as_str().starts_with(base));
}

/// `fetch(path)` from the page (with its cookie): status and JSON body.
async fn page_fetch(c: &Client, method: &str, path: &str, csrf: bool) -> (u16, Value) {
    let script = r#"
        const [method, path, csrf] = arguments;
        const done = arguments[arguments.length - 1];
        const headers = {};
        (async () => {
          if (csrf) {
            const me = await (await fetch('/auth/me')).json();
            headers['X-CSRF-Token'] = me.csrf_token;
          }
          const r = await fetch(path, { method, headers });
          let body = null;
          try { body = await r.json(); } catch {}
          done([r.status, body]);
        })();
    "#;
    let v = c
        .execute_async(script, vec![json!(method), json!(path), json!(csrf)])
        .await
        .unwrap();
    (v[0].as_u64().unwrap() as u16, v[1].clone())
}

async fn session_cookie(c: &Client) -> String {
    c.get_named_cookie("cpi_session")
        .await
        .expect("the session cookie")
        .value()
        .to_string()
}

#[tokio::test]
async fn sign_in_with_a_real_provider_in_a_real_browser() {
    let s = setup().await;
    let driver = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, &chromium(), profile.path()).await;

    // Anonymous: nothing but the sign-in (no anonymous access once SSO is on).
    c.goto(&format!("{}/", s.base)).await.unwrap();
    wait_css_text(&c, "#sso-login", "Sign in").await;
    let (status, _) = page_fetch(&c, "GET", "/projects", false).await;
    assert_eq!(status, 401);

    // Alice, operator of alpha-* through her group.
    sign_in(&c, &s.base, "alice").await;
    let cookie = c.get_named_cookie("cpi_session").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Lax)");
    assert!(cookie.secure() != Some(true), "plain HTTP: not Secure");
    let (status, me) = page_fetch(&c, "GET", "/auth/me", false).await;
    assert_eq!(status, 200);
    assert_eq!(me["actor"], "user:alice@example.com");
    assert_eq!(me["groups"], json!(["team-alpha"]));
    assert!(me["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("operate")));
    assert!(!me["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("write")));

    c.goto(&format!("{}/#/projects", s.base)).await.unwrap();
    let main = wait_css_text(&c, "main", "alpha-one").await;
    assert!(
        !main.contains("beta-two"),
        "only the bound projects: {main}"
    );
    // For a person to look at: the header while signed in.
    let shot = std::env::temp_dir().join("cpi-sso-signed-in.png");
    std::fs::write(&shot, c.screenshot().await.unwrap()).unwrap();
    assert!(
        !visible(&c, "#new-project").await,
        "no write: no New project"
    );

    // Retry, from the job's page.
    c.goto(&format!("{}/#/jobs/{}", s.base, s.job))
        .await
        .unwrap();
    wait_css_text(&c, "#retry-job", "Retry").await;
    c.find(Locator::Css("#retry-job"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css_text(&c, "#retry-result", "").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status,): (String,) =
            sqlx::query_as("SELECT status FROM cpi_import_jobs WHERE id = $1::uuid")
                .bind(&s.job)
                .fetch_one(&s.server.pool)
                .await
                .unwrap();
        if status == "queued" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the retry never queued: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Admin only: refused to the operator.
    let (status, body) = page_fetch(
        &c,
        "DELETE",
        &format!("/connections/{}", s.connection),
        true,
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // CSRF: the cookie alone does not make an action.
    let alice_cookie = session_cookie(&c).await;
    let (status, body) = page_fetch(&c, "POST", &format!("/jobs/{}/cancel", s.job), false).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("X-CSRF-Token")
            || body["error"].as_str().unwrap().contains("x-csrf-token"),
        "{body}"
    );
    let http = reqwest::Client::new();
    let me: Value = http
        .get(format!("{}/auth/me", s.base))
        .header("Cookie", format!("cpi_session={alice_cookie}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = me["csrf_token"].as_str().unwrap().to_string();
    let foreign = http
        .post(format!("{}/jobs/{}/cancel", s.base, s.job))
        .header("Cookie", format!("cpi_session={alice_cookie}"))
        .header("X-CSRF-Token", &csrf)
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let logout_without = http
        .post(format!("{}/auth/logout", s.base))
        .header("Cookie", format!("cpi_session={alice_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(logout_without.status(), StatusCode::FORBIDDEN);

    // Sign out: the session ends server-side, the cookie no longer counts.
    c.goto(&format!("{}/", s.base)).await.unwrap();
    wait_css_text(&c, "#sso-user", "alice@example.com").await;
    c.find(Locator::Css("#sso-logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css_text(&c, "#sso-login", "Sign in").await;
    let after = http
        .get(format!("{}/auth/me", s.base))
        .header("Cookie", format!("cpi_session={alice_cookie}"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(after["signed_in"], false, "{after}");

    // Bob, viewer of alpha-one by name, in another browser (the provider
    // still knows Alice in this one): sees it, may not read its
    // connection's details, sees no Retry.
    c.close().await.unwrap();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, &chromium(), profile.path()).await;
    sign_in(&c, &s.base, "bob").await;
    let bob_cookie = session_cookie(&c).await;
    c.goto(&format!("{}/#/projects", s.base)).await.unwrap();
    let main = wait_css_text(&c, "main", "alpha-one").await;
    assert!(!main.contains("beta-two"), "{main}");
    let (status, body) =
        page_fetch(&c, "GET", &format!("/connections/{}", s.connection), false).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("read_secrets"),
        "{body}"
    );
    assert!(!body.to_string().contains(PLANTED_PW));
    c.goto(&format!("{}/#/jobs/{}", s.base, s.job))
        .await
        .unwrap();
    wait_css_text(&c, "main", "orders.csv").await;
    assert!(
        !visible(&c, "#retry-job").await
            || !c
                .find(Locator::Css("#retry-job"))
                .await
                .unwrap()
                .is_enabled()
                .await
                .unwrap()
    );
    c.find(Locator::Css("#sso-logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css_text(&c, "#sso-login", "Sign in").await;
    c.close().await.unwrap();

    // The audit trail: every sign-in, sign-out and cookie-made action with
    // the SSO user as actor; no cookie, CSRF token or secret anywhere.
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT actor, action, outcome FROM cpi_audit ORDER BY id")
            .fetch_all(&s.server.pool)
            .await
            .unwrap();
    let has = |actor: &str, action: &str, outcome: &str| {
        rows.iter()
            .any(|(a, b, o)| a == actor && b == action && o == outcome)
    };
    let alice = "user:alice@example.com";
    let bob = "user:bob@example.com";
    for (actor, action, outcome) in [
        (alice, "sign-in", "303"),
        (alice, "POST /jobs/{id}/retry", "200"),
        (alice, "DELETE /connections/{id}", "403"),
        (alice, "POST /jobs/{id}/cancel", "403"),
        (alice, "sign-out", "403"),
        (alice, "sign-out", "204"),
        (bob, "sign-in", "303"),
        (bob, "GET /connections/{id}", "403"),
        (bob, "sign-out", "204"),
    ] {
        assert!(
            has(actor, action, outcome),
            "no {actor} {action} {outcome} in {rows:#?}"
        );
    }
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, E'\\n') FROM cpi_audit t")
        .fetch_one(&s.server.pool)
        .await
        .unwrap();
    for secret in [
        alice_cookie.as_str(),
        bob_cookie.as_str(),
        csrf.as_str(),
        CLIENT_SECRET,
        PLANTED_PW,
        TOKEN,
    ] {
        assert!(!dump.contains(secret), "the audit trail holds {secret:?}");
    }
    // Sessions are stored by hash: the cookie's value is in no row.
    let sessions: String =
        sqlx::query_scalar("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM cpi_sessions t")
            .fetch_one(&s.server.pool)
            .await
            .unwrap();
    assert!(!sessions.contains(&alice_cookie) && !sessions.contains(&bob_cookie));
    s.server.stop().await;
}

#[tokio::test]
async fn a_callback_that_is_not_this_browsers_sign_in_is_refused() {
    let s = setup().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The login sends the browser to the provider with PKCE (S256).
    let r = http
        .get(format!("{}/auth/login", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.contains("code_challenge_method=S256"), "{to}");
    assert!(to.contains("code_challenge="), "{to}");
    let bound = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        bound.contains("HttpOnly") && bound.contains("SameSite=Lax"),
        "{bound}"
    );
    let state = url::Url::parse(&to)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    // A forged code for the right state, without the browser's cookie, and
    // with it: both refused, and no session starts.
    for cookie in [None, Some(format!("cpi_login={state}"))] {
        let mut req = http.get(format!(
            "{}/auth/callback?code=forged-code&state={state}",
            s.base
        ));
        if let Some(c) = &cookie {
            req = req.header("Cookie", c);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().get("set-cookie").is_none());
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM cpi_sessions")
        .fetch_one(&s.server.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let refused: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM cpi_audit WHERE action = 'sign-in' AND outcome = '401'",
    )
    .fetch_one(&s.server.pool)
    .await
    .unwrap();
    assert_eq!(refused, 2);
    s.server.stop().await;
}

#[test]
fn serve_checks_the_single_sign_on_flags_before_starting() {
    use crate::support::cpi;
    let r = cpi(&[
        "serve",
        "--oidc-issuer",
        "http://127.0.0.1:9",
        "--oidc-client-id",
        "c",
    ]);
    assert_ne!(r.code, 0);
    r.assert_stderr("--public-url");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("secret");
    std::fs::write(&empty, "\n").unwrap();
    let empty = empty.to_str().unwrap();
    let base = [
        "serve",
        "--oidc-issuer",
        "http://127.0.0.1:9",
        "--oidc-client-id",
        "c",
        "--public-url",
    ];
    let r = cpi(&[
        &base[..],
        &[
            "https://cpi.example.com",
            "--oidc-client-secret-file",
            empty,
        ],
    ]
    .concat());
    assert_ne!(r.code, 0);
    r.assert_stderr("is empty");
    let r = cpi(&[&base[..], &["not a url"]].concat());
    assert_ne!(r.code, 0);
    r.assert_stderr("--public-url");
    // A secret never shows, even in an error about something else.
    let secret = dir.path().join("real");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let r = cpi(&[
        &base[..],
        &[
            "ftp://cpi.example.com",
            "--oidc-client-secret-file",
            secret.to_str().unwrap(),
        ],
    ]
    .concat());
    assert_ne!(r.code, 0);
    r.assert_hides("serve", &[CLIENT_SECRET]);
}

/// Under HTTPS (`--tls-cert-file`) the cookies are `Secure`, and the
/// provider is sent an `https` redirect URI.
#[tokio::test]
async fn over_https_the_cookies_are_secure() {
    use crate::support::tls::{ca, leaf};
    let certs = tempfile::tempdir().unwrap();
    ca(certs.path(), "ca");
    leaf(
        certs.path(),
        "ca",
        "tls",
        "localhost",
        Some("IP:127.0.0.1"),
        "30",
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let redirect = format!("{base}/auth/callback");
    let provider = Provider::start(CLIENT, CLIENT_SECRET, &redirect, &json!({}));
    let db = TestDb::new().await;
    let pool = cpi::store::connect(&Secret::new(db.url())).await.unwrap();
    cpi::store::migrate(&pool).await.unwrap();
    let mut state = AppState::new(pool.clone(), None, Arc::new(Health::new()));
    state.http.tls = Some(cpi::api::https::TlsFiles {
        cert: certs.path().join("tls.crt"),
        key: certs.path().join("tls.key"),
    });
    state.sso = Some(Arc::new(Sso {
        oidc: Oidc::new(OidcSettings {
            issuer: provider.issuer.clone(),
            client_id: CLIENT.into(),
            client_secret: Some(Secret::new(CLIENT_SECRET)),
            groups_claim: "groups".into(),
            redirect_url: redirect.clone(),
        })
        .unwrap(),
        origin: base.clone(),
        secure: true,
        session_ttl: DEFAULT_SESSION_TTL,
    }));
    let server = Server::serve_on(listener, db, pool, state).await;
    let pem = std::fs::read(certs.path().join("ca.crt")).unwrap();
    let https = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = https
        .get(format!("{base}/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let sent: String = url::Url::parse(&to)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .unwrap()
        .1
        .into();
    assert_eq!(sent, redirect);
    // Signed out, the cookie removal is Secure too.
    let r = https
        .post(format!("{base}/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let gone = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        gone.contains("Max-Age=0") && gone.ends_with("; Secure"),
        "{gone}"
    );
    server.stop().await;
}
