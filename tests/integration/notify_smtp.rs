//! Mail through an SMTP server that wants STARTTLS and AUTH (aiosmtpd
//! with a certificate made by the test): a wrong password is a recorded
//! failed attempt naming the server's refusal but never the password; the
//! password is read from its file at each send (a fixed file is used at
//! the next retry, and `cpi_objects` holds only the path).

use std::time::Duration;

use crate::support::daemon::{events_list, events_table, Daemon, Setup};
use crate::support::fs::manifest;
use crate::support::manifests::alert;
use crate::support::receiver::Smtp;
use crate::support::wait::{wait_at_least, wait_for};
use crate::support::{write, Cpi, TestDb};

const USER: &str = "cpi-mailer";
const RIGHT: &str = "planted-smtp-right-4417";
const WRONG: &str = "planted-smtp-wrong-3391";

fn assert_hides(what: &str, text: &str) {
    for s in [RIGHT, WRONG] {
        assert!(!text.contains(s), "{s} in {what}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_out_authenticated_over_starttls_and_a_wrong_password_is_a_failed_attempt() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("sales", "{table: events, mode: append}")]);
    let pool = db.pool().await;
    events_table(&pool).await;
    let smtp = Smtp::start_auth(s.dir.path(), USER, RIGHT).await;
    let m = s.manifests();
    let ca = Smtp::ca_file(s.dir.path());
    write(
        &m,
        "notify/mail.yaml",
        &manifest(
            "Provider",
            "mail",
            &format!(
                "type: email\nsmtp:\n  host: 127.0.0.1\n  port: {}\n  from: cpi@example.com\n  to: [ops@example.com]\n  username_file: ../smtp.user\n  password_file: ../smtp.pass\n  ca_file: {}\n",
                smtp.port,
                ca.display()
            ),
        ),
    );
    write(&m, "../smtp.user", &format!("{USER}\n"));
    write(&m, "../smtp.pass", &format!("{WRONG}\n"));
    write(
        &m,
        "notify/ops.yaml",
        &alert("ops", "mail", "[sales]", "import.failed"),
    );
    let mut d = Daemon::start(&db, &m, &s.log("d.log"), &[]);
    std::fs::write(s.inbox("sales").join("bad.csv"), "id,tag,n\nx,a,1\n").unwrap();
    wait_at_least(
        &pool,
        40,
        "a failed attempt",
        "SELECT count(*) FROM cpi_delivery_attempts WHERE NOT ok",
        1,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let error: String = sqlx::query_scalar(
        "SELECT error FROM cpi_delivery_attempts WHERE NOT ok ORDER BY id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    // The server's refusal, as the operator needs it to fix the file.
    assert!(
        error.contains("535") && error.contains("Authentication credentials invalid"),
        "{error}"
    );
    assert_hides("the attempt's error", &error);
    assert!(smtp.refused() >= 1, "the server refused a login");
    assert!(smtp.mails().is_empty(), "{:#?}", smtp.mails());

    // Only the path is stored: the password stays in its file.
    let spec: String = sqlx::query_scalar(
        "SELECT spec::text FROM cpi_objects WHERE kind = 'Provider' AND name = 'mail'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(spec.contains("smtp.pass"), "{spec}");
    assert_hides("cpi_objects", &spec);

    // The file is read at each send: fixed, the next retry logs in.
    write(&m, "../smtp.pass", &format!("{RIGHT}\n"));
    let mails = smtp.wait(1, Duration::from_secs(40)).await;
    let mail = &mails[0];
    assert!(
        mail.contains(&format!("X-Authenticated-As: {USER}")),
        "{mail}"
    );
    assert!(mail.contains("X-Tls: yes"), "{mail}");
    assert!(
        mail.contains("Subject: [cpi] import.failed in project sales"),
        "{mail}"
    );
    assert_hides("the mail", mail);
    wait_for("the delivery sent", Duration::from_secs(10), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM cpi_deliveries WHERE state = 'sent'")
            .fetch_one(&pool)
            .await
            .unwrap();
        (n == 1).then_some(())
    })
    .await
    .unwrap();
    d.stop(10);
    assert_hides("the daemon's log", &d.log());
    let list = events_list(&db, &m);
    list.assert_code(0);
    assert_hides("cpi events list", &list.all());
}

/// With credentials, a server that does not offer STARTTLS never sees the
/// password: the attempt fails instead of logging in in the clear (the
/// server offers AUTH without TLS and would take the login).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_never_sent_without_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start_auth_plain(dir.path(), USER, RIGHT).await;
    let m = dir.path().join("m");
    write(
        &m,
        "mail.yaml",
        &manifest(
            "Provider",
            "mail",
            &format!(
                "type: email\nsmtp:\n  host: 127.0.0.1\n  port: {}\n  from: cpi@example.com\n  to: [ops@example.com]\n  username_file: smtp.user\n  password_file: smtp.pass\n",
                smtp.port
            ),
        ),
    );
    write(&m, "smtp.user", &format!("{USER}\n"));
    write(&m, "smtp.pass", &format!("{RIGHT}\n"));
    write(
        &m,
        "ops.yaml",
        &alert("ops", "mail", "['*']", "import.failed"),
    );
    let out = Cpi::new(["notify", "test", "ops"]).manifests(&m).run();
    assert_ne!(out.code, 0, "{}", out.all());
    out.assert_stderr("STARTTLS is not supported on this server");
    assert_hides("cpi notify test", &out.all());
    assert!(smtp.mails().is_empty(), "{:#?}", smtp.mails());
    assert_eq!(smtp.refused(), 0, "no login was tried");
}
