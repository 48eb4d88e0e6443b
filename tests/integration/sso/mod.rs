//! Single sign-on for the console (issue #26) against a real OpenID Connect
//! provider on loopback (npm's `oidc-provider`, support/oidc.rs): the
//! callback's refusals, the flags, the cookies under HTTPS; [`browser`]
//! drives a real headless Chromium through sign-in, roles, CSRF and
//! sign-out.

mod browser;

use std::sync::Arc;

use cpi::access::{Anonymous, Binding, Role, Subject};
use cpi::api::oidc::{Oidc, OidcSettings};
use cpi::api::session::{Sso, DEFAULT_SESSION_TTL};
use cpi::api::AppState;
use cpi::metrics::Health;
use cpi::secret::Secret;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::api::{Server, TOKEN};
use crate::support::oidc::Provider;
use crate::support::TestDb;

pub(super) const CLIENT: &str = "cpi-console";
pub(super) const CLIENT_SECRET: &str = "Planted-client-secret-5s0c3";
pub(super) const PLANTED_PW: &str = "Planted-Pw-ss0-7a1";

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

pub(super) struct Setup {
    pub(super) server: Server,
    _provider: Provider,
    pub(super) base: String,
    pub(super) connection: String,
    pub(super) job: String,
    _files: tempfile::TempDir,
}

pub(super) async fn setup() -> Setup {
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
