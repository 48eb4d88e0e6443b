//! ApiTokens and RoleBindings as reconciled objects (issue #26): declared in
//! git, planned and applied into `cpi_objects`, shown by `cpi diff` without
//! the token, and followed by every process serving the API: `cpi serve`
//! (which reads no manifests) and the daemon.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

use crate::support::daemon::Daemon;
use crate::support::fs::manifest;
use crate::support::wait::{http_ok, wait_for};
use crate::support::{free_port, write, Cpi, Run, TestDb};
use cpi::access::token::sha256_hex;

/// Poll interval of the access rules (2 s) plus room for a loaded machine.
const PICKUP: Duration = Duration::from_secs(12);

/// The token texts of the tests: planted secrets, never to be printed.
const CI_TOKEN: &str = "cpi_planted_ci_token_0123456789abcdef";
const OLD_TOKEN: &str = "cpi_planted_kept_token_fedcba9876";
const EXPIRED_TOKEN: &str = "cpi_planted_expired_token_5555aaaa";

fn token(name: &str, text: &str, expires: &str) -> String {
    manifest(
        "ApiToken",
        name,
        &format!(
            "description: {name}'s token\nsha256: {}\nexpires: {expires}\n",
            sha256_hex(text)
        ),
    )
}

fn binding(name: &str, role: &str, token: &str) -> String {
    manifest(
        "RoleBinding",
        name,
        &format!("role: {role}\nprojects: ['*']\nsubjects: [{{token: {token}}}]\n"),
    )
}

/// A manifests folder: token `ci` bound as viewer on every project, and
/// token `keep`, which stays (so that revoking `ci` is not the removal of
/// every managed object, which the delete guard refuses).
fn ci_viewer_and_a_kept_token() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("manifests");
    std::fs::create_dir(&m).unwrap();
    write(
        &m,
        "ci.yaml",
        &token("ci", CI_TOKEN, "2999-01-01T00:00:00Z"),
    );
    write(&m, "ci-role.yaml", &binding("ci-role", "viewer", "ci"));
    write(
        &m,
        "keep.yaml",
        &token("keep", OLD_TOKEN, "2999-01-01T00:00:00Z"),
    );
    (dir, m)
}

/// Removes token `ci` and its binding from the manifests.
fn revoke_ci(m: &Path) {
    std::fs::remove_file(m.join("ci.yaml")).unwrap();
    std::fs::remove_file(m.join("ci-role.yaml")).unwrap();
}

/// `cpi serve` as a process, killed when dropped (its log printed if the test failed).
struct Serve {
    child: Child,
    log: PathBuf,
    base: String,
}

impl Serve {
    async fn start(db: &TestDb, dir: &Path) -> Serve {
        let port = free_port();
        let log = dir.join("serve.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Cpi::new(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .db(db)
            .env("CPI_LOG", "info,sqlx=warn")
            .command();
        cmd.stdout(Stdio::null()).stderr(file);
        let s = Serve {
            child: cmd.spawn().expect("start cpi serve"),
            log,
            base: format!("http://127.0.0.1:{port}"),
        };
        http_ok(&format!("{}/healthz", s.base), Duration::from_secs(20))
            .await
            .unwrap();
        s
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- cpi serve ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// The status of `method path` on `base` with `token`.
async fn status(base: &str, method: reqwest::Method, path: &str, token: &str) -> StatusCode {
    reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// Waits until `base` knows the tokens (anonymous callers refused, as
/// once any token is configured) and accepts `token`.
async fn wait_token_works(base: &str, token: &str, what: &str) {
    wait_for(what, PICKUP, || async move {
        let anonymous = reqwest::get(format!("{base}/projects"))
            .await
            .ok()?
            .status();
        let with = status(base, reqwest::Method::GET, "/projects", token).await;
        (anonymous == StatusCode::UNAUTHORIZED && with == StatusCode::OK).then_some(())
    })
    .await
    .unwrap();
}

/// Waits until `GET /projects` with `token` answers `want` on `base`.
async fn wait_status(base: &str, token: &str, want: StatusCode, what: &str) {
    wait_for(what, PICKUP, || async move {
        (status(base, reqwest::Method::GET, "/projects", token).await == want).then_some(())
    })
    .await
    .unwrap();
}

fn apply(db: &TestDb, manifests: &Path) -> Run {
    let run = Cpi::new(["apply"]).db(db).manifests(manifests).run();
    run.assert_code(0);
    run
}

/// Before, `cpi serve` read no manifests and knew only `--api-token-file`:
/// a token declared in git was refused there. Now it follows the applied
/// rows: started before the apply, it accepts the token after it; a role
/// changed in git takes effect without a restart; an expired token is
/// refused; a token removed from git stops working within the poll interval.
#[tokio::test]
async fn regression_cpi_serve_honours_api_tokens_from_git() {
    let db = TestDb::new().await;
    let (dir, m) = ci_viewer_and_a_kept_token();
    write(
        &m,
        "old.yaml",
        &token("old", EXPIRED_TOKEN, "2020-01-01T00:00:00Z"),
    );
    write(&m, "old-role.yaml", &binding("old-role", "admin", "old"));
    let serve = Serve::start(&db, dir.path()).await;
    let base = serve.base.as_str();
    // Before the apply nothing is configured: anonymous callers (and any
    // token) read as viewers. Once the rows are picked up, that ends.
    let anonymous = || async {
        reqwest::get(format!("{base}/projects"))
            .await
            .unwrap()
            .status()
    };
    assert_eq!(anonymous().await, StatusCode::OK, "no token configured yet");
    apply(&db, &m);
    wait_for(
        "cpi serve to pick up the tokens (anonymous access then defaults to none)",
        PICKUP,
        || async { (anonymous().await == StatusCode::UNAUTHORIZED).then_some(()) },
    )
    .await
    .unwrap();
    assert_eq!(
        status(base, reqwest::Method::GET, "/projects", CI_TOKEN).await,
        StatusCode::OK,
        "the applied token works on cpi serve"
    );
    assert_eq!(
        status(base, reqwest::Method::GET, "/projects", EXPIRED_TOKEN).await,
        StatusCode::UNAUTHORIZED,
        "an expired token is refused"
    );

    let pause = |token| status(base, reqwest::Method::POST, "/projects/nosuch/pause", token);
    assert_eq!(
        pause(CI_TOKEN).await,
        StatusCode::FORBIDDEN,
        "a viewer may not pause"
    );
    write(&m, "ci-role.yaml", &binding("ci-role", "operator", "ci"));
    apply(&db, &m);
    wait_for("the operator role to take effect", PICKUP, || async {
        (pause(CI_TOKEN).await == StatusCode::NOT_FOUND).then_some(())
    })
    .await
    .unwrap();
    revoke_ci(&m);
    apply(&db, &m);
    wait_status(
        base,
        CI_TOKEN,
        StatusCode::UNAUTHORIZED,
        "the removed token to be refused",
    )
    .await;
}

/// The daemon reconciles a token's removal from git and refuses it at
/// once; a `cpi serve` on the same management database refuses it within
/// its poll interval.
#[tokio::test]
async fn a_token_removed_from_git_stops_working_on_the_daemon_and_on_cpi_serve() {
    let db = TestDb::new().await;
    let (dir, m) = ci_viewer_and_a_kept_token();
    let port = free_port();
    let daemon = Daemon::start(
        &db,
        &m,
        &dir.path().join("daemon.log"),
        &["--listen", &format!("127.0.0.1:{port}")],
    );
    let daemon_base = format!("http://127.0.0.1:{port}");
    http_ok(&format!("{daemon_base}/healthz"), Duration::from_secs(30))
        .await
        .unwrap();
    let serve = Serve::start(&db, dir.path()).await;
    wait_token_works(&daemon_base, CI_TOKEN, "the token on the daemon").await;
    wait_token_works(&serve.base, CI_TOKEN, "the token on cpi serve").await;
    revoke_ci(&m);
    wait_status(
        &daemon_base,
        CI_TOKEN,
        StatusCode::UNAUTHORIZED,
        "the daemon to refuse it",
    )
    .await;
    wait_status(
        &serve.base,
        CI_TOKEN,
        StatusCode::UNAUTHORIZED,
        "cpi serve to refuse it",
    )
    .await;
    let (rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM cpi_objects WHERE kind = 'ApiToken'")
            .fetch_one(&db.pool().await)
            .await
            .unwrap();
    assert_eq!(
        rows, 1,
        "the removed token's row is pruned, the kept one stays"
    );
    drop(daemon);
}

/// `cpi diff` shows an added, changed and removed ApiToken and RoleBinding
/// (name, expiry, role; a short prefix of the hash), `cpi apply` writes and
/// prunes their rows, and the token's text is in no output and no row.
#[tokio::test]
async fn diff_and_apply_show_access_objects_and_never_the_token() {
    let db = TestDb::new().await;
    let (_dir, m) = ci_viewer_and_a_kept_token();
    let hash = sha256_hex(CI_TOKEN);
    let diff = |what: &str| {
        let run = Cpi::new(["diff"]).db(&db).manifests(&m).run();
        run.assert_hides(what, &[CI_TOKEN, OLD_TOKEN, &hash]);
        run
    };
    let mut outputs = Vec::new();
    let d = diff("the created objects");
    d.assert_stdout("+ ApiToken ci (create)")
        .assert_stdout("+ RoleBinding ci-role (create)")
        .assert_stdout("expires: 2999-01-01T00:00:00Z")
        .assert_stdout("role: viewer")
        .assert_stdout(&format!("sha256: {}…", &hash[..12]));
    outputs.push(d.all());
    outputs.push(apply(&db, &m).all());
    let d = diff("nothing to do");
    d.assert_stdout("Plan: 0 to create, 0 to update, 0 to delete.");
    write(
        &m,
        "ci.yaml",
        &token("ci", CI_TOKEN, "2998-01-01T00:00:00Z"),
    );
    write(&m, "ci-role.yaml", &binding("ci-role", "operator", "ci"));
    let d = diff("the changed objects");
    d.assert_stdout("~ ApiToken ci (update: spec)")
        .assert_stdout("~ RoleBinding ci-role (update: spec)")
        .assert_stdout("+  expires: 2998-01-01T00:00:00Z")
        .assert_stdout("-  role: viewer")
        .assert_stdout("+  role: operator");
    outputs.push(d.all());
    outputs.push(apply(&db, &m).all());
    revoke_ci(&m);
    let d = diff("the removed objects");
    d.assert_stdout("- ApiToken ci (delete)")
        .assert_stdout("- RoleBinding ci-role (delete)");
    outputs.push(d.all());
    outputs.push(apply(&db, &m).all());
    let pool = db.pool().await;
    let names: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, name FROM cpi_objects ORDER BY kind, name")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        names,
        vec![("ApiToken".to_string(), "keep".to_string())],
        "pruned"
    );
    // No row of the management database holds a token's text.
    for table in ["cpi_objects", "cpi_reconcile_runs", "cpi_audit"] {
        let (all,): (Option<String>,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT string_agg(t::text, ',') FROM {table} t"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        let all = all.unwrap_or_default();
        for secret in [CI_TOKEN, OLD_TOKEN] {
            assert!(!all.contains(secret), "{table} holds a token");
        }
    }
    for out in outputs {
        assert!(!out.contains(CI_TOKEN) && !out.contains(OLD_TOKEN));
    }
}
