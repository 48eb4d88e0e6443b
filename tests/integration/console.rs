//! The operator console in a real headless Chromium, driven over WebDriver
//! (chromedriver), against a real daemon: `cpi::daemon::run` with manifests
//! (a managed connection and project), an unmanaged connection, and a
//! succeeded and a failed import.
//!
//! These tests fail, never skip, when the browser cannot start.
//! `CPI_UPDATE_SCREENSHOTS=1` writes the screenshots into docs/console/
//! (otherwise into a temp folder, so a test run leaves the checkout clean).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cpi::daemon::{self, Settings};
use cpi::secret::Secret;
use fantoccini::elements::Element;
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::support::console::{browser, start_driver, world};
use crate::support::daemon::{csv_rows, events_table};
use crate::support::fs::tree;
use crate::support::manifests::{alert, connection_to as connection_doc, project as project_doc};
use crate::support::wait::wait_i64;
use crate::support::{write, TestDb};

pub(crate) const TOKEN: &str = "console-token-7d1e55a0";
/// A real password in every connection URL: it must never reach a page,
/// a response or a request URL without the token.
const PLANTED: &str = "Planted-Pw-c0ns0le-91f3";

/// The daemon as a task of the test, with the API and console on `base`.
pub(crate) struct Daemon {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), cpi::store::StoreError>>,
    pub(crate) base: String,
}

impl Daemon {
    pub(crate) async fn start(db: &TestDb, manifests: &Path) -> Daemon {
        // The pages are read without the token (anonymous viewer); with a
        // token configured that is no longer the default.
        Daemon::start_with(db, manifests, cpi::access::Anonymous::Viewer).await
    }

    /// The daemon with `--anonymous` as given.
    pub(crate) async fn start_with(
        db: &TestDb,
        manifests: &Path,
        anonymous: cpi::access::Anonymous,
    ) -> Daemon {
        let mut settings = Settings::new(manifests);
        settings.interval = Duration::from_secs(2);
        settings.rescan = Duration::from_secs(1);
        settings.settle = Duration::from_millis(300);
        settings.lease = Duration::from_secs(5);
        settings.worker_prefix = format!("console-{}", uuid::Uuid::new_v4().simple());
        settings.api_token = Some(Secret::new(TOKEN));
        settings.freshness_interval = Duration::from_millis(300);
        settings.http.anonymous = anonymous;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(daemon::run(
            settings,
            db.pool().await,
            Some(listener),
            async {
                let _ = rx.await;
            },
        ));
        Daemon {
            stop: Some(tx),
            task,
            base,
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("the daemon stops")
            .expect("no panic")
            .expect("a clean stop");
    }
}

/// Where screenshots go: docs/console/ when asked, else a temp folder.
fn shots_dir(tmp: &Path) -> PathBuf {
    if std::env::var_os("CPI_UPDATE_SCREENSHOTS").is_some() {
        crate::support::fs::repo_root().join("docs/console")
    } else {
        tmp.join("shots")
    }
}

/// The browser session and what the test checks on every page.
struct Ui {
    c: Client,
    base: String,
    shots: PathBuf,
    /// Every page source seen without the token.
    anonymous_sources: Vec<String>,
    /// Every URL the browser requested, document by document.
    requests: Vec<String>,
}

impl Ui {
    /// The browser on the console at `base`, screenshots below `tmp`.
    fn new(c: Client, base: &str, tmp: &Path) -> Ui {
        Ui {
            c,
            base: base.to_string(),
            shots: shots_dir(tmp),
            anonymous_sources: vec![],
            requests: vec![],
        }
    }

    /// Loads the console at `hash` (a new document: the requests of the
    /// one before are kept first).
    async fn open(&mut self, hash: &str) {
        self.harvest().await;
        self.c.goto(&format!("{}/{hash}", self.base)).await.unwrap();
        self.js("performance.setResourceTimingBufferSize(100000); return 0")
            .await;
    }

    /// Adds the current document's requests (its resource timings and its
    /// own URL) to `requests`.
    async fn harvest(&mut self) {
        let urls = self
            .js("return location.protocol.startsWith('http') ? performance.getEntriesByType('resource').map(e => e.name).concat([location.href]) : []")
            .await;
        let urls: Vec<String> = serde_json::from_value(urls).unwrap();
        self.requests.extend(urls);
    }

    /// Clicks a link or button by CSS selector. Pages re-render as they
    /// poll, so an element found a moment ago may be replaced before the
    /// click reaches it: then it is found again.
    async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.find(css).await.click().await {
                Ok(_) => return,
                Err(e) if e.is_stale_element_reference() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
    }

    /// Enters the API token in the box at the top and uses it.
    async fn use_token(&self) {
        self.type_in("#token", TOKEN).await;
        self.click("#token-use").await;
    }

    /// Closes the browser, then stops the daemon.
    async fn close(self, d: Daemon) {
        self.c.close().await.unwrap();
        d.stop().await;
    }

    /// Clicks "Test connection" and waits for its success.
    async fn test_connection_succeeds(&self) {
        self.click("#test-connection").await;
        self.wait_text("#test-result", "Connection successful", 20)
            .await;
    }

    /// Whether the element `css` (waited for) can be used.
    async fn enabled(&self, css: &str) -> bool {
        self.find(css).await.is_enabled().await.unwrap()
    }

    async fn find(&self, css: &str) -> Element {
        match self
            .c
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => panic!("no {css}: {e}\n{}", self.main_text().await),
        }
    }

    /// Types `text` into the field `css`.
    async fn type_in(&self, css: &str, text: &str) {
        self.find(css).await.send_keys(text).await.unwrap();
    }

    /// Clears the field `css`, then types `text` into it.
    async fn replace(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn main_text(&self) -> String {
        match self.c.find(Locator::Css("main")).await {
            Ok(m) => m.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the text of `css` contains `needle` (pages poll).
    async fn wait_text(&self, css: &str, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(e) = self.c.find(Locator::Css(css)).await {
                if let Ok(t) = e.text().await {
                    if t.contains(needle) {
                        return t;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "{css} never contained {needle:?}; main: {}",
                self.main_text().await
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    async fn js(&self, script: &str) -> Value {
        self.c.execute(script, vec![]).await.unwrap()
    }

    async fn shot(&self, name: &str) {
        std::fs::create_dir_all(&self.shots).unwrap();
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// What every page must hold: labelled controls, no secret in the
    /// The accessibility tree below `<main>` as Chromium exposes it to a
    /// screen reader (DevTools' `Accessibility.getFullAXTree`): each
    /// node's DOM node, role and name, in tree order.
    async fn main_ax_tree(&self) -> Vec<(i64, String, String)> {
        let tree = self.cdp("Accessibility.getFullAXTree", json!({})).await;
        let nodes = tree["nodes"].as_array().cloned().unwrap_or_default();
        let by_id: std::collections::HashMap<String, &Value> = nodes
            .iter()
            .map(|n| (n["nodeId"].as_str().unwrap_or_default().to_string(), n))
            .collect();
        let text = |n: &Value, k: &str| n[k]["value"].as_str().unwrap_or("").to_string();
        let main = nodes
            .iter()
            .find(|n| text(n, "role") == "main")
            .unwrap_or_else(|| panic!("no main landmark in the accessibility tree"));
        let mut out = Vec::new();
        let mut stack = vec![main];
        while let Some(n) = stack.pop() {
            out.push((
                n["backendDOMNodeId"].as_i64().unwrap_or(-1),
                text(n, "role"),
                text(n, "name"),
            ));
            let children = n["childIds"].as_array().cloned().unwrap_or_default();
            for c in children.iter().rev() {
                if let Some(child) = c.as_str().and_then(|id| by_id.get(id)) {
                    stack.push(child);
                }
            }
        }
        out
    }

    /// A DevTools command through chromedriver's `goog/cdp/execute`.
    async fn cdp(&self, cmd: &'static str, params: Value) -> Value {
        self.c
            .issue_cmd(Cdp { cmd, params })
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"))
    }

    /// URL or title; without the token, no URL or password in the source.
    async fn check_page(&mut self, anonymous: bool) {
        let unlabelled = self
            .js("return [...document.querySelectorAll('input,select,textarea')].filter(e => !e.labels || !e.labels.length).map(e => e.outerHTML)")
            .await;
        assert_eq!(unlabelled, json!([]), "controls without a label");
        let url = self.c.current_url().await.unwrap().to_string();
        let title = self.c.title().await.unwrap();
        for s in [&url, &title] {
            assert!(!s.contains(TOKEN) && !s.contains(PLANTED), "secret in {s}");
        }
        if anonymous {
            let src = self.c.source().await.unwrap();
            assert!(
                !src.contains(PLANTED),
                "{url}: the planted password in the page"
            );
            assert!(
                !src.contains("postgres://") && !src.contains("postgresql://"),
                "{url}: a database URL in the page"
            );
            self.anonymous_sources.push(src);
        }
    }
}

/// A Chrome DevTools Protocol command, sent through chromedriver.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params});
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

/// Waits for the daemon's first apply: project `k` of [`one_project`].
async fn reconciled(pool: &sqlx::PgPool) {
    wait_i64(
        pool,
        30,
        "reconciled",
        "SELECT count(*) FROM cpi_projects",
        1,
    )
    .await
    .unwrap();
}

async fn job_id(pool: &sqlx::PgPool, file: &str) -> String {
    let (id,): (uuid::Uuid,) = sqlx::query_as(
        "SELECT id FROM cpi_import_jobs WHERE file_name = $1 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(file)
    .fetch_one(pool)
    .await
    .unwrap();
    id.to_string()
}

async fn row_id(pool: &sqlx::PgPool, table: &str, name: &str) -> String {
    let (id,): (uuid::Uuid,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM {table} WHERE name = $1"
    )))
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap();
    id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_clicks_through_every_page() {
    let (b, db) = world().await;
    let tmp = &b.tmp;

    // A daemon with a managed connection and project, whose URL carries
    // the planted password (the server trusts loopback, so it also works).
    let pool = db.pool().await;
    events_table(&pool).await;
    let m = tmp.path().join("manifests");
    let inbox = tmp.path().join("inbox/sales");
    std::fs::create_dir_all(&inbox).unwrap();
    write(
        &m,
        "connections/warehouse.yaml",
        &connection_doc("warehouse", &db, "the warehouse"),
    );
    write(&m, "warehouse.pass", &format!("{PLANTED}\n"));
    write(
        &m,
        "projects/sales.yaml",
        &project_doc(
            "sales",
            "warehouse",
            &inbox,
            "{table: events, mode: append}",
        ),
    );
    let d = Daemon::start(&db, &m).await;
    wait_i64(
        &pool,
        30,
        "the manifests reconciled",
        "SELECT count(*) FROM cpi_projects WHERE managed_by IS NOT NULL",
        1,
    )
    .await
    .unwrap();

    // An unmanaged connection, created through the API.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/connections", d.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "scratch", "description": "made by hand",
                      "database_url": format!("postgres://postgres:{PLANTED}@127.0.0.1:5432/{}", db.name)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // A file that imports and one that fails on a value.
    std::fs::write(inbox.join("good.csv"), csv_rows(1, 5, "good")).unwrap();
    std::fs::write(
        inbox.join("bad.csv"),
        "id,tag,n\n10,x,1\n11,y,not-a-number\n",
    )
    .unwrap();
    wait_i64(&pool, 30, "one import succeeded, one failed",
        "SELECT count(*) FROM cpi_import_jobs WHERE (file_name = 'good.csv' AND status = 'succeeded') OR (file_name = 'bad.csv' AND status = 'failed')", 2).await.unwrap();
    // Drift: a managed row changed behind cpi's back, set back by a reconcile.
    sqlx::query(
        "UPDATE cpi_connections SET description = 'changed by hand' WHERE name = 'warehouse'",
    )
    .execute(&pool)
    .await
    .unwrap();
    wait_i64(
        &pool,
        30,
        "the drift corrected",
        "SELECT coalesce(sum(drifted), 0)::bigint FROM cpi_reconcile_runs",
        1,
    )
    .await
    .unwrap();

    let warehouse = row_id(&pool, "cpi_connections", "warehouse").await;
    let scratch = row_id(&pool, "cpi_connections", "scratch").await;
    let sales = row_id(&pool, "cpi_projects", "sales").await;
    let bad = job_id(&pool, "bad.csv").await;
    let started = Instant::now();

    let mut ui = Ui::new(b.c, &d.base, tmp.path());
    // ---- Without the token: what the API shows anonymously. ----
    ui.open("").await;
    ui.find("#card-reconcile").await;
    let first_paint = started.elapsed();
    ui.wait_text("#card-reconcile", "Drift corrections", 10)
        .await;
    ui.wait_text("#failed24", "1", 10).await;
    let charts = ui
        .js("return document.querySelectorAll('figure.chart-box svg').length")
        .await;
    assert_eq!(charts, json!(4));
    let bars = ui
        .js("return document.querySelectorAll('#chart-files rect.bar').length")
        .await;
    assert!(bars.as_u64().unwrap() >= 1, "the files chart has a bar");
    ui.check_page(true).await;
    ui.shot("overview").await;

    ui.click("a[data-nav=connections]").await;
    let t = ui.wait_text("main", "scratch", 10).await;
    assert!(
        t.contains("warehouse") && t.contains("managed by git"),
        "{t}"
    );
    assert!(
        t.contains("Enter the API token"),
        "says where a token unlocks more: {t}"
    );
    ui.check_page(true).await;
    ui.click(&format!("a[href='#/connections/{warehouse}']"))
        .await;
    ui.wait_text("main", "shown only with the API token", 10)
        .await;
    assert!(!ui.enabled("#test-connection").await);
    ui.check_page(true).await;

    ui.click("a[data-nav=projects]").await;
    ui.click(&format!("a[href='#/projects/{sales}']")).await;
    let t = ui.wait_text("main", "Recent jobs", 10).await;
    assert!(
        t.contains(&inbox.display().to_string()) && t.contains("events") && t.contains("append"),
        "{t}"
    );
    assert!(t.contains("managed by git"), "{t}");
    ui.check_page(true).await;
    ui.shot("project").await;

    ui.click("a[data-nav=jobs]").await;
    ui.wait_text("main", "bad.csv", 10).await;
    ui.find("#f-status")
        .await
        .select_by_value("failed")
        .await
        .unwrap();
    ui.click("#job-filters button").await;
    ui.wait_text("#job-count", "1 shown of 1", 10).await;
    // The list shows each job's error (anonymously: how to see it).
    ui.wait_text("main table", "shown with the API token", 10)
        .await;
    let url = ui.c.current_url().await.unwrap();
    assert!(
        url.fragment().unwrap().contains("status=failed"),
        "filters live in the URL: {url}"
    );
    ui.check_page(true).await;
    ui.click(&format!("a[href='#/jobs/{bad}']")).await;
    // Anonymously the API may hold back row values: only the verdict is
    // asserted here; the row errors are, with the token, below.
    ui.wait_text("#job-status", "failed", 10).await;
    assert!(!ui.enabled("#retry-job").await, "retry needs the token");
    // What to do next, with the file's exact place; how to see the error.
    let next = ui.wait_text("#next-step", "then press Retry", 10).await;
    let set_aside = inbox.join("failed/bad.csv");
    assert!(next.contains(set_aside.to_str().unwrap()), "{next}");
    ui.wait_text("#job-error", "enter the API token at the top", 10)
        .await;
    ui.check_page(true).await;
    // An empty list says what would fill it.
    ui.open("#/jobs?status=duplicate").await;
    ui.wait_text("main", "drop a CSV file into a project's inbox folder", 10)
        .await;

    ui.click("a[data-nav=reconcile]").await;
    ui.find("main table .drift").await;
    ui.check_page(true).await;
    ui.shot("reconcile").await;
    ui.click("main table a").await;
    ui.wait_text("main", "Diff (secrets redacted)", 10).await;
    ui.check_page(true).await;

    // ---- With the token (a wrong one is refused, not kept). ----
    ui.type_in("#token", "not-the-token").await;
    ui.click("#token-use").await;
    ui.wait_text("#auth-state", "Wrong token", 10).await;
    assert_eq!(
        ui.js("return sessionStorage.length").await,
        json!(0),
        "a wrong token is not kept"
    );
    ui.use_token().await;
    ui.wait_text("#auth-state", "Token set", 10).await;
    let stored = ui
        .js("return sessionStorage.getItem('cpi.api-token')")
        .await;
    assert_eq!(stored, json!(TOKEN));
    let local = ui.js("return localStorage.length").await;
    assert_eq!(local, json!(0), "the token is kept for the session only");

    // A managed row: tested, but read-only.
    ui.open(&format!("#/connections/{warehouse}")).await;
    ui.wait_text(
        "#managed-note",
        "managed by git: connections/warehouse.yaml",
        10,
    )
    .await;
    assert!(
        !ui.enabled("#edit-connection").await,
        "a managed row refuses edits"
    );
    assert!(!ui.enabled("#delete-connection").await);
    ui.test_connection_succeeds().await;
    ui.check_page(false).await;
    ui.shot("connection").await;

    // An unmanaged one: create (a bad name first, shown at its field), delete.
    ui.open("#/connections").await;
    ui.click("#new-connection").await;
    ui.type_in("#f-name", "not a valid name!").await;
    ui.type_in(
        "#f-database_url",
        &format!("postgres://postgres:{PLANTED}@127.0.0.1:5432/{}", db.name),
    )
    .await;
    ui.click("#connection-form button[type=submit]").await;
    let err = ui.wait_text("#e-name", "name", 10).await;
    assert!(!err.is_empty());
    ui.shot("connection-form").await;
    ui.find("#f-name").await.clear().await.unwrap();
    ui.type_in("#f-name", "temporary").await;
    ui.click("#connection-form button[type=submit]").await;
    ui.wait_text("h1", "Connection temporary", 10).await;
    ui.test_connection_succeeds().await;
    ui.click("#delete-connection").await;
    ui.click("#confirm-delete").await;
    let t = ui.wait_text("main", "scratch", 10).await;
    assert!(!t.contains("temporary"), "deleted: {t}");
    let left: (i64,) =
        sqlx::query_as("SELECT count(*) FROM cpi_connections WHERE name = 'temporary'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left.0, 0);
    // Editing an unmanaged connection keeps its URL when left empty.
    ui.open(&format!("#/connections/{scratch}")).await;
    ui.click("#edit-connection").await;
    ui.replace("#f-description", "edited in the console").await;
    ui.click("#connection-form button[type=submit]").await;
    ui.wait_text("main", "edited in the console", 10).await;
    ui.test_connection_succeeds().await;

    // An unmanaged project: the API's validation error shows at its
    // field; fixed, it is created, then edited. The managed one is not.
    ui.open(&format!("#/projects/{sales}")).await;
    ui.wait_text("#managed-note", "managed by git: projects/sales.yaml", 10)
        .await;
    assert!(!ui.enabled("#edit-project").await);
    ui.open("#/projects/new").await;
    ui.type_in("#f-name", "manual").await;
    ui.find("#f-connection_id")
        .await
        .select_by_label("scratch")
        .await
        .unwrap();
    // A field per setting: a misspelt option in a table's JSON is named
    // there, with what was meant; then the missing key at its own field.
    ui.replace("#f-t0-table", "manual_t").await;
    ui.find("#f-t0-mode")
        .await
        .select_by_value("upsert")
        .await
        .unwrap();
    ui.replace("#f-t0-other", r#"{"on_eror": "skip_rows"}"#)
        .await;
    ui.click("#project-form button[type=submit]").await;
    let err = ui.wait_text("#e-t0-other", "on_eror", 10).await;
    assert!(err.contains("did you mean `on_error`"), "{err}");
    ui.shot("project-form").await;
    ui.find("#f-t0-other").await.clear().await.unwrap();
    ui.click("#project-form button[type=submit]").await;
    let err = ui
        .wait_text("#e-t0-primary_key", "needs a primary_key", 10)
        .await;
    assert!(err.contains("config.tables[0].primary_key"), "{err}");
    let invalid = ui
        .find("#f-t0-primary_key")
        .await
        .attr("aria-invalid")
        .await
        .unwrap();
    assert_eq!(invalid.as_deref(), Some("true"));
    assert!(
        ui.find("#e-t0-other")
            .await
            .text()
            .await
            .unwrap()
            .is_empty(),
        "the fixed field's error is gone"
    );
    ui.type_in("#f-t0-primary_key", "id").await;
    ui.click("#project-form button[type=submit]").await;
    let t = ui.wait_text("h1", "Project manual", 10).await;
    assert!(!t.is_empty());
    let t = ui.wait_text("main", "manual_t", 10).await;
    assert!(t.contains("upsert") && t.contains("scratch"), "{t}");
    ui.click("#edit-project").await;
    ui.type_in("#f-description", "loaded by hand").await;
    ui.click("#project-form button[type=submit]").await;
    ui.wait_text("main", "loaded by hand", 10).await;

    // A live page redraws every 5 s: with nothing new, the polite live
    // region (<main aria-live>) is not touched, so a screen reader is quiet.
    ui.open("#/connections").await;
    ui.wait_text("main", "scratch", 10).await;
    ui.js("window.__mutations = 0; new MutationObserver((m) => { window.__mutations += m.length; }).observe(document.getElementById('main'), {childList: true, subtree: true, characterData: true, attributes: true}); return 0").await;
    // Chromium builds its accessibility tree after the DOM: wait until it
    // shows this page, not the one before.
    let deadline = Instant::now() + Duration::from_secs(15);
    let tree_before = loop {
        let t = ui.main_ax_tree().await;
        if t.iter()
            .any(|(_, role, name)| role == "heading" && name == "Connections")
        {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the accessibility tree holds the page: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let before = ui
        .js("return document.getElementById('updated').textContent")
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while ui
        .js("return document.getElementById('updated').textContent")
        .await
        == before
    {
        assert!(Instant::now() < deadline, "no poll redrew the page");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What a screen reader reads: the same accessibility nodes (the same
    // DOM nodes behind them, with the same roles and names).
    assert_eq!(
        ui.main_ax_tree().await,
        tree_before,
        "a poll with nothing new changed the accessibility tree of <main>"
    );
    assert_eq!(
        ui.js("return window.__mutations").await,
        json!(0),
        "a poll with nothing new changed the live region"
    );

    // Pause and resume, from the project's page (managed projects too:
    // a pause is the operator's, not git's).
    ui.open(&format!("#/projects/{sales}")).await;
    ui.click("#pause-project").await;
    let t = ui.wait_text("#pause-state", "paused since", 10).await;
    assert!(t.contains("from the console"), "{t}");
    let paused: i64 = sqlx::query_scalar("SELECT count(*) FROM cpi_project_pauses")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(paused, 1);
    ui.click("a[data-nav=projects]").await;
    ui.wait_text("main", "paused", 10).await;
    ui.click(&format!("a[href='#/projects/{sales}']")).await;
    ui.click("#resume-project").await;
    ui.wait_text("#pause-state", "Not paused", 10).await;
    let events: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM cpi_events WHERE kind LIKE 'project.%' ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(events, ["project.paused", "project.resumed"]);

    // Paging: past the first row, a link back to the newer ones.
    ui.open("#/jobs?offset=1").await;
    ui.wait_text("#job-count", "1 shown of 2", 10).await;
    ui.find("nav.pager a[rel=prev]").await;

    // Keyboard: a nav link activated with Enter.
    ui.type_in("a[data-nav=jobs]", "\u{E007}").await;
    ui.wait_text("h1", "Jobs", 10).await;

    // Retry the failed job once its file is fixed.
    let failed_copy = inbox.join("failed/bad.csv");
    assert!(failed_copy.is_file(), "the failed file was set aside");
    std::fs::write(&failed_copy, "id,tag,n\n10,x,1\n11,y,2\n").unwrap();
    ui.open(&format!("#/jobs/{bad}")).await;
    ui.wait_text("#job-status", "failed", 10).await;
    let t = ui.wait_text("main", "Row errors", 10).await;
    assert!(
        t.contains("Line") && t.contains("Column") && t.contains("Value"),
        "{t}"
    );
    assert!(t.contains("not-a-number"), "the row error's value: {t}");
    // The next step is there with the token too.
    assert!(t.contains("then press Retry"), "{t}");
    ui.shot("job-failed").await;
    ui.click("#retry-job").await;
    ui.wait_text("#retry-result", "Queued again", 10).await;
    ui.wait_text("#job-status", "succeeded", 40).await;
    // The retried file went the inbox's normal way: once into the
    // top-level processed/, nothing left in failed/, its rows loaded once.
    let left: Vec<String> = tree(&inbox)
        .into_iter()
        .filter(|p| p.contains("bad.csv"))
        .collect();
    assert_eq!(left, ["processed/bad.csv"], "where the retried file ended");
    let loaded: Vec<i64> =
        sqlx::query_scalar("SELECT id::bigint FROM events WHERE id >= 10 ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(loaded, [10, 11], "the fixed file's rows, once");
    let attempts: i32 =
        sqlx::query_scalar("SELECT attempts FROM cpi_import_jobs WHERE id::text = $1")
            .bind(&bad)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(attempts, 2, "one attempt counted for the retry");
    ui.check_page(false).await;
    ui.shot("job").await;

    // 320 px wide: readable, no sideways scrolling.
    ui.c.set_window_size(320, 900).await.unwrap();
    ui.open("").await;
    ui.find("#card-queue").await;
    let (w, sw) = {
        let v = ui
            .js("return [window.innerWidth, document.documentElement.scrollWidth]")
            .await;
        (v[0].as_u64().unwrap(), v[1].as_u64().unwrap())
    };
    assert!(
        sw <= w + 1,
        "no horizontal scroll at {w} px: content is {sw} px wide"
    );
    ui.shot("overview-320").await;

    // No request of the console carried a secret in its URL.
    ui.harvest().await;
    let mut urls = std::mem::take(&mut ui.requests);
    urls.sort();
    urls.dedup();
    assert!(urls.len() > 10, "{urls:?}");
    for u in &urls {
        assert!(
            !u.contains(TOKEN) && !u.contains(PLANTED) && !u.contains("token="),
            "secret in {u}"
        );
    }
    // And every API response the console read, asked again without the
    // token, holds no database URL: no `database_url` field, no value.
    assert!(
        urls.iter().any(|u| u.contains("/reconcile/runs/")),
        "{urls:?}"
    );
    for u in urls.iter().filter(|u| !u.contains("/console/")) {
        let body = http.get(u).send().await.unwrap().text().await.unwrap();
        assert!(
            !body.contains("\"database_url\"")
                && !body.contains("postgres://")
                && !body.contains("postgresql://")
                && !body.contains(PLANTED),
            "{u}: {body}"
        );
    }
    assert!(ui.anonymous_sources.len() >= 7);
    eprintln!("first page interactive after {first_paint:?}");

    ui.close(d).await;
}

/// With a token configured and no anonymous reading (the default), a
/// console opened without the token says how to get in, not the API's
/// refusal; once the token is entered the page loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_without_a_token_says_how_to_give_one() {
    let (b, db) = world().await;
    let tmp = &b.tmp;
    let m = tmp.path().join("manifests");
    std::fs::create_dir_all(&m).unwrap();
    let d = Daemon::start_with(&db, &m, cpi::access::Anonymous::None).await;
    let ui = Ui::new(b.c, &d.base, tmp.path());
    ui.c.goto(&format!("{}/#/projects", d.base)).await.unwrap();
    let t = ui.wait_text("main", "Sign in to see this page", 15).await;
    assert!(t.contains("Enter your token in the box at the top"), "{t}");
    assert!(!t.contains("Cannot load"), "{t}");
    ui.use_token().await;
    ui.wait_text("h1", "Projects", 15).await;
    let t = ui.main_text().await;
    assert!(!t.contains("Sign in to see this page"), "{t}");
    ui.close(d).await;
}

/// A job that skipped rows with `rejects: table` lists them on its page
/// (with the token: they hold the file's values), with the SQL to find
/// them all in the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_page_lists_the_rows_it_kept_in_rejected_rows() {
    let (b, db) = world().await;
    let tmp = &b.tmp;
    let pool = db.pool().await;
    let (m, inbox) = one_project(
        &db,
        tmp.path(),
        "{table: kept, create_table: true, on_error: skip_rows, rejects: table}",
    );
    let d = Daemon::start(&db, &m).await;
    std::fs::write(inbox.join("k.csv"), "id,v\n1,a\n2,b,kept-value-7\n3,c\n").unwrap();
    wait_i64(
        &pool,
        30,
        "k.csv loaded with a row skipped",
        "SELECT count(*) FROM cpi_import_jobs WHERE file_name = 'k.csv' AND status = 'succeeded' AND rows_rejected = 1",
        1,
    )
    .await
    .unwrap();
    let id = job_id(&pool, "k.csv").await;
    let mut ui = Ui::new(b.c, &d.base, tmp.path());
    ui.open(&format!("#/jobs/{id}")).await;
    ui.wait_text("#job-status", "succeeded", 15).await;
    let t = ui.main_text().await;
    assert!(
        !t.contains("kept-value-7"),
        "no row value without the token: {t}"
    );
    ui.use_token().await;
    let t = ui.wait_text("main", "Rejected rows", 15).await;
    assert!(t.contains("2,b,kept-value-7"), "{t}");
    assert!(t.contains("expected 2 fields, found 3"), "{t}");
    let count = ui.wait_text("#kept-count", "1 row kept", 10).await;
    assert!(count.contains(&format!("job_id = '{id}'")), "{count}");
    ui.close(d).await;
}

/// Manifests below `tmp` for connection `w` (its password file holding
/// [`PLANTED`]) and project `k` on `tables`, with its inbox: both paths.
fn one_project(db: &TestDb, tmp: &Path, tables: &str) -> (PathBuf, PathBuf) {
    let m = tmp.join("manifests");
    let inbox = tmp.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    write(&m, "connections/w.yaml", &connection_doc("w", db, "target"));
    write(&m, "w.pass", &format!("{PLANTED}\n"));
    write(
        &m,
        "projects/k.yaml",
        &project_doc("k", "w", &inbox, tables),
    );
    (m, inbox)
}

/// A browser that cannot start fails the test with the reason: CI never
/// passes a console test by skipping it.
#[tokio::test]
#[should_panic(expected = "headless Chromium did not start")]
async fn a_browser_that_cannot_start_fails_the_test() {
    let driver = start_driver().await;
    let tmp = tempfile::tempdir().unwrap();
    browser(
        &driver,
        "/nonexistent/chromium",
        &tmp.path().join("profile"),
    )
    .await;
}

/// The audit page (issue 26): a reader without the audit permission sees
/// no link to it and is told `#/audit` is not allowed; the admin (the
/// API token) sees the link and the rows of the actions just done, newest
/// first, with no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_page_shows_the_admin_the_actions_just_done_and_hides_from_a_viewer() {
    let (b, db) = world().await;
    let tmp = &b.tmp;
    let (m, _) = one_project(&db, tmp.path(), "{table: kept, create_table: true}");
    let d = Daemon::start(&db, &m).await;
    let pool = db.pool().await;
    reconciled(&pool).await;
    let http = reqwest::Client::new();
    for action in ["pause", "resume"] {
        let r = http
            .post(format!("{}/projects/k/{action}?reason=audit-page", d.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let mut ui = Ui::new(b.c, &d.base, tmp.path());
    // The anonymous viewer: no link, and the page says no.
    ui.open("#/").await;
    ui.wait_text("h1", "Overview", 15).await;
    assert!(!ui.find("#nav-audit").await.is_displayed().await.unwrap());
    ui.open("#/audit").await;
    let t = ui.wait_text("main", "Not allowed", 15).await;
    assert!(!t.contains("POST /projects"), "{t}");
    ui.check_page(true).await;
    // The admin: the link, then the rows.
    ui.use_token().await;
    ui.wait_text("#nav-audit", "Audit", 15).await;
    ui.click("#nav-audit a").await;
    let t = ui
        .wait_text("main", "POST /projects/{name}/resume", 15)
        .await;
    assert!(t.contains("POST /projects/{name}/pause"), "{t}");
    assert!(t.contains("token:--api-token-file"), "{t}");
    assert!(t.contains("project:k"), "{t}");
    let resume = t.find("POST /projects/{name}/resume").unwrap();
    let pause = t.find("POST /projects/{name}/pause").unwrap();
    assert!(resume < pause, "newest first: {t}");
    let caption = ui.find("main table caption").await.text().await.unwrap();
    assert_eq!(caption, "Audit trail");
    ui.check_page(false).await;
    // Filtered by action: the pause only.
    ui.type_in("#f-action", "POST /projects/{name}/pause").await;
    ui.click("#audit-filters button").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ui
        .c
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("action=")
    {
        assert!(Instant::now() < deadline, "the filter never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = ui
        .wait_text("main", "POST /projects/{name}/pause", 15)
        .await;
    assert!(!t.contains("POST /projects/{name}/resume"), "{t}");
    let src = ui.c.source().await.unwrap();
    assert!(
        !src.contains(PLANTED) && !src.contains(TOKEN),
        "a secret on the audit page"
    );
    ui.close(d).await;
}

/// The events page (issue 25): a failed import's event with the delivery
/// of its Alert to a real loopback webhook: failed attempts while the
/// receiver is down (with the last error), then sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_page_shows_a_failed_imports_event_with_its_delivery_attempts() {
    use crate::support::fs::manifest;
    use crate::support::receiver::Recorder;
    let (b, db) = world().await;
    let tmp = &b.tmp;
    let (m, inbox) = one_project(&db, tmp.path(), "{table: kept, create_table: true}");
    let r = Recorder::start().await;
    r.set_up(false);
    write(
        &m,
        "notify/hook.yaml",
        &manifest("Provider", "hook", "type: webhook\nurl_file: ../hook.url\n"),
    );
    write(&m, "../hook.url", &format!("{}\n", r.url("in")));
    write(
        &m,
        "notify/ops.yaml",
        &alert("ops", "hook", "['*']", "import.failed"),
    );
    let d = Daemon::start(&db, &m).await;
    let pool = db.pool().await;
    reconciled(&pool).await;
    std::fs::write(inbox.join("bad.csv"), "id,v\n1,a,extra\n").unwrap();
    crate::support::wait::wait_at_least(
        &pool,
        30,
        "a failed attempt",
        "SELECT count(*) FROM cpi_delivery_attempts WHERE NOT ok",
        1,
    )
    .await
    .unwrap();
    let mut ui = Ui::new(b.c, &d.base, tmp.path());
    ui.open("#/events").await;
    let t = ui.wait_text("main", "import.failed", 15).await;
    assert!(t.contains("Events"), "{t}");
    let row = ui.wait_text("main li.delivery", "last error", 15).await;
    assert!(row.contains("ops"), "{row}");
    assert!(row.contains("attempt"), "{row}");
    let caption = ui.find("main table caption").await.text().await.unwrap();
    assert_eq!(caption, "Events");
    ui.check_page(true).await;
    r.set_up(true);
    r.wait(1, Duration::from_secs(60)).await;
    // The page polls: the delivery turns sent.
    let row = ui.wait_text("main li.delivery", "sent", 30).await;
    assert!(row.contains("ops"), "{row}");
    ui.close(d).await;
}
