//! The console signed in by single sign-on in a real headless Chromium:
//! sign in through the provider's form, see only the bound projects, retry
//! allowed for an operator (by group), connection detail refused for a
//! viewer (by user), sign out; CSRF without the token refused; the audit
//! trail names the SSO users and holds no secret.

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{setup, CLIENT_SECRET, PLANTED_PW};
use crate::support::api::TOKEN;
use crate::support::console::{browser, chromium, Browser};

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
    let login = press_then_find(c, "#sso-login", "input[name=login]").await;
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

/// Clicks `css`, then waits for `then` (on the page it leads to).
async fn press_then_find(c: &Client, css: &str, then: &str) -> fantoccini::elements::Element {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(then))
        .await
        .unwrap_or_else(|e| panic!("after {css}, no {then}: {e}"))
}

/// Presses Sign out: the console's session ends, the browser goes to the
/// provider's end-session page (RP-initiated logout), which asks to
/// confirm, then comes back to the console, signed out.
async fn sign_out(c: &Client, base: &str) {
    press_then_find(c, "#sso-logout", "button[name=logout]")
        .await
        .click()
        .await
        .unwrap();
    wait_css_text(c, "#sso-login", "Sign in").await;
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
    let b = Browser::start().await;
    let c = b.c;

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
    sign_out(&c, &s.base).await;
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

    // Signed out at the provider too (RP-initiated logout): a new sign-in
    // in this browser asks for credentials again instead of coming back
    // signed in as Alice.
    press_then_find(&c, "#sso-login", "input[name=login]").await;
    assert!(!c.current_url().await.unwrap().as_str().starts_with(&s.base));

    // Bob, viewer of alpha-one by name, in another browser: sees it, may
    // not read its connection's details, sees no Retry.
    c.close().await.unwrap();
    let c = browser(&b.driver, &chromium(), &b.tmp.path().join("bob")).await;
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
    sign_out(&c, &s.base).await;
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
        (alice, "sign-out", "200"),
        (bob, "sign-in", "303"),
        (bob, "GET /connections/{id}", "403"),
        (bob, "sign-out", "200"),
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
