//! Notifications delivered by a real `cpi run` to real receivers on
//! loopback (issue #25): a signed webhook, Slack's incoming-webhook JSON,
//! mail through aiosmtpd; the receiver down and back; the daemon killed
//! mid-delivery; two replicas; `max_per_hour`. Planted secrets (the
//! webhook URL, the HMAC key, the SMTP password, the database password)
//! appear in no message, log or event list.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::support::daemon::{events_list, events_table, Daemon, Setup};
use crate::support::fs::manifest;
use crate::support::manifests::alert;
use crate::support::receiver::{Recorded, Recorder, Smtp};
use crate::support::wait::wait_at_least;
use crate::support::{write, TestDb};

const URL_SECRET: &str = "planted-url-secret-5521";
const KEY_SECRET: &str = "planted-hmac-secret-8830";
const SMTP_SECRET: &str = "planted-smtp-secret-1174";
const DB_SECRET: &str = "planted-db-secret-6612";
const ROW_VALUE: &str = "planted-row-value-99";

/// A webhook Provider `hook` at `url` (with `URL_SECRET` in its path),
/// signed with `KEY_SECRET`, and an Alert `ops` on it.
fn webhook(m: &Path, r: &Recorder, alert: &str) {
    write(
        m,
        "notify/hook.yaml",
        &manifest(
            "Provider",
            "hook",
            "type: webhook\nurl_file: ../hook.url\nsecret_file: ../hook.key\n",
        ),
    );
    write(m, "../hook.url", &format!("{}\n", r.url(URL_SECRET)));
    write(m, "../hook.key", &format!("{KEY_SECRET}\n"));
    write(m, "notify/ops.yaml", &manifest("Alert", "ops", alert));
}

fn verify(r: &Recorded) {
    assert!(
        cpi::notify::sign::verify(
            KEY_SECRET.as_bytes(),
            &r.body,
            r.header("x-cpi-signature-256").as_deref()
        ),
        "the body is signed: {r:?}"
    );
    assert_eq!(
        r.header("x-cpi-event-id").unwrap(),
        r.json()["id"].as_str().unwrap()
    );
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains(ROW_VALUE), "a row value in {what}: {text}");
    assert_no_planted_secret(what, text);
}

/// The daemon's own log quotes import errors (row values included) by
/// design; secrets never.
fn assert_no_planted_secret(what: &str, text: &str) {
    for s in [URL_SECRET, KEY_SECRET, SMTP_SECRET] {
        assert!(!text.contains(s), "{s} in {what}: {text}");
    }
    assert!(
        !text.contains(&format!(":{DB_SECRET}@")),
        "the database password in {what}: {text}"
    );
}

/// The event kinds every provider is tested with.
const KINDS: [&str; 5] = [
    "import.failed",
    "check.failed",
    "freshness.warn",
    "freshness.recovered",
    "reconcile.failed",
];

/// The projects of the scenario: `sales` (a freshness rule of 3 s),
/// `sales-checked` (a check), `other` (no Alert takes it).
async fn projects() -> (TestDb, Setup, sqlx::PgPool) {
    let db = TestDb::new().await;
    let s = Setup::new(
        &db,
        &[
            ("sales", "{table: events, mode: append, freshness: {warn_after: 3s, error_after: 1h}}"),
            ("sales-checked", "{table: events, mode: append, checks: [{check: accepted_values, column: tag, values: [a]}]}"),
            ("other", "{table: events, mode: append}"),
        ],
    );
    // The test server trusts local connections: the password is only planted.
    write(&s.manifests(), "target.pass", &format!("{DB_SECRET}\n"));
    let pool = db.pool().await;
    events_table(&pool).await;
    (db, s, pool)
}

/// Makes each of [`KINDS`] happen, once the daemon runs (with a quick
/// `--freshness-interval`): a failed import, a failed check, a freshness
/// warning and its recovery, a failed reconcile.
async fn provoke(s: &Setup, pool: &sqlx::PgPool) {
    std::fs::write(s.inbox("sales").join("a.csv"), "id,tag,n\n1,a,1\n").unwrap();
    std::fs::write(
        s.inbox("sales").join("bad.csv"),
        format!("id,tag,n\n{ROW_VALUE},a,1\n"),
    )
    .unwrap();
    std::fs::write(s.inbox("sales-checked").join("c.csv"), "id,tag,n\n5,zz,1\n").unwrap();
    std::fs::write(s.inbox("other").join("bad.csv"), "id,tag,n\nx,a,1\n").unwrap();
    // Freshness: nothing new for 3 s is a warning; a file is the recovery.
    wait_at_least(
        pool,
        30,
        "the warning",
        "SELECT count(*) FROM cpi_events WHERE kind = 'freshness.warn'",
        1,
    )
    .await
    .unwrap();
    std::fs::write(s.inbox("sales").join("b.csv"), "id,tag,n\n2,a,1\n").unwrap();
    wait_at_least(
        pool,
        30,
        "the recovery",
        "SELECT count(*) FROM cpi_events WHERE kind = 'freshness.recovered'",
        1,
    )
    .await
    .unwrap();
    write(
        &s.manifests(),
        "broken.yaml",
        "apiVersion: cpi/v1\nkind: Nonsense\n",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_tells_a_failed_import_a_failed_check_freshness_and_a_failed_reconcile() {
    let (db, s, pool) = projects().await;
    let r = Recorder::start().await;
    let m = s.manifests();
    webhook(
        &m,
        &r,
        "provider: hook\nprojects: ['sales*']\nevents: [import.failed, check.failed, freshness.warn, freshness.recovered, reconcile.failed]\n",
    );
    let mut d = Daemon::start(
        &db,
        &m,
        &s.log("d.log"),
        &[
            "--freshness-interval",
            "300ms",
            "--console-url",
            "http://console.example/",
        ],
    );
    provoke(&s, &pool).await;
    let want: BTreeSet<&str> = KINDS.into();
    let got = crate::support::wait::wait_for("every kind told", Duration::from_secs(40), || {
        let all = r.requests();
        let kinds: BTreeSet<String> = all
            .iter()
            .map(|q| q.json()["kind"].as_str().unwrap().to_string())
            .collect();
        let done = want.iter().all(|k| kinds.contains(*k));
        async move { done.then_some(all) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:#?}\n{}", r.requests(), d.log()));
    let mut seqs: std::collections::BTreeMap<String, i64> = Default::default();
    for q in &got {
        verify(q);
        assert_eq!(q.path, format!("/{URL_SECRET}"));
        let b = q.json();
        assert_no_secret(
            "a message",
            &q.body.iter().map(|&c| c as char).collect::<String>(),
        );
        assert_ne!(b["project"], "other", "not a project of the alert");
        // In order per project.
        let p = b["project"].as_str().unwrap_or("").to_string();
        let seq = b["events"][0]["seq"].as_i64().unwrap();
        assert!(seqs.insert(p, seq).is_none_or(|before| before < seq), "{b}");
    }
    let failed = got
        .iter()
        .map(Recorded::json)
        .find(|b| b["kind"] == "import.failed" && b["events"][0]["file"] == "bad.csv")
        .expect("the failed import");
    let e = &failed["events"][0];
    assert_eq!(
        (e["project"].as_str(), e["table"].as_str()),
        (Some("sales"), Some("events")),
        "{failed}"
    );
    assert!(
        e["link"]
            .as_str()
            .unwrap()
            .starts_with("http://console.example/#/jobs/"),
        "{failed}"
    );
    assert!(
        e["error"].as_str().is_some_and(|l| !l.is_empty()),
        "the first error line: {failed}"
    );
    assert_eq!(e["payload"]["rows_read"], 1, "{failed}");
    assert!(
        failed["text"].as_str().unwrap().contains("file bad.csv"),
        "{failed}"
    );
    let check = got
        .iter()
        .map(Recorded::json)
        .find(|b| b["kind"] == "check.failed")
        .unwrap();
    assert_eq!(
        check["events"][0]["payload"]["check"], "accepted_values(tag)",
        "{check}"
    );
    // No event told twice.
    let ids: Vec<String> = got
        .iter()
        .map(|q| q.header("x-cpi-event-id").unwrap())
        .collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "{ids:?}"
    );
    d.stop(10);
    assert_no_planted_secret("the daemon's log", &d.log());
    let list = events_list(&db, &m);
    list.assert_code(0).assert_stdout("\"state\": \"sent\"");
    assert_no_secret("cpi events list", &list.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_and_mail_tell_a_failed_import_a_failed_check_freshness_and_a_failed_reconcile() {
    let (db, s, pool) = projects().await;
    let r = Recorder::start().await;
    let smtp = Smtp::start(s.dir.path()).await;
    let m = s.manifests();
    write(
        &m,
        "notify/slack.yaml",
        &manifest("Provider", "slack", "type: slack\nurl_file: ../slack.url\n"),
    );
    write(
        &m,
        "../slack.url",
        &format!("{}\n", r.url(&format!("services/{URL_SECRET}"))),
    );
    write(
        &m,
        "notify/mail.yaml",
        &manifest(
            "Provider",
            "mail",
            &format!("type: email\nsmtp:\n  host: 127.0.0.1\n  port: {}\n  from: 'cpi <cpi@example.com>'\n  to: [ops@example.com]\n", smtp.port),
        ),
    );
    for (name, provider) in [("to-slack", "slack"), ("to-mail", "mail")] {
        write(
            &m,
            &format!("notify/{name}.yaml"),
            &alert(name, provider, "['sales*']", &KINDS.join(", ")),
        );
    }
    let mut d = Daemon::start(&db, &m, &s.log("d.log"), &["--freshness-interval", "300ms"]);
    provoke(&s, &pool).await;
    let told = |texts: &[String]| {
        KINDS
            .iter()
            .all(|k| texts.iter().any(|t| t.contains(&format!("[cpi] {k} in "))))
    };
    let got =
        crate::support::wait::wait_for("Slack told every kind", Duration::from_secs(40), || {
            let texts: Vec<String> = r
                .requests()
                .iter()
                .map(|q| q.json()["text"].as_str().unwrap_or("").to_string())
                .collect();
            let done = told(&texts);
            async move { done.then_some(()) }
        })
        .await;
    got.unwrap_or_else(|e| panic!("{e}: {:#?}\n{}", r.requests(), d.log()));
    for q in r.requests() {
        let b = q.json();
        let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["text"], "Slack's incoming-webhook shape: {b}");
        assert!(q.header("x-cpi-event-id").is_some());
        assert_no_secret("a Slack message", b["text"].as_str().unwrap());
    }
    let failed = r
        .requests()
        .iter()
        .map(|q| q.json()["text"].as_str().unwrap().to_string())
        .find(|t| t.starts_with("[cpi] import.failed in project sales: bad.csv"))
        .unwrap();
    assert!(
        failed.contains("table events") && failed.contains("error: "),
        "{failed}"
    );
    let mails =
        crate::support::wait::wait_for("mail for every kind", Duration::from_secs(40), || {
            let mails = smtp.mails();
            let subjects: Vec<String> = mails
                .iter()
                .filter_map(|m| {
                    m.lines()
                        .find(|l| l.starts_with("Subject: "))
                        .map(|l| l.replacen("Subject: ", "", 1))
                })
                .collect();
            let done = told(&subjects);
            async move { done.then_some(mails) }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {:#?}\n{}", smtp.mails(), d.log()));
    for mail in &mails {
        assert!(mail.contains("X-Cpi-Event-Id: "), "{mail}");
        assert!(mail.contains("To: ops@example.com"), "{mail}");
        assert_no_secret("a mail", mail);
    }
    d.stop(10);
}
