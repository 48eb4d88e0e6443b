//! Delivery under faults (issue #25), with a real `cpi run` and a real
//! receiver on loopback: the receiver down then back, the daemon killed
//! mid-delivery, two replicas, and a flood under `max_per_hour`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support::daemon::{events_table, Daemon, Setup};
use crate::support::db::scalar_i64;
use crate::support::fs::manifest;
use crate::support::manifests;
use crate::support::receiver::Recorder;
use crate::support::wait::wait_i64;
use crate::support::{write, TestDb};

/// A webhook Provider to `r` and an Alert `ops` (`extra` YAML lines) on
/// import failures of every project.
fn alert(m: &std::path::Path, r: &Recorder, extra: &str) {
    write(
        m,
        "notify/hook.yaml",
        &manifest("Provider", "hook", "type: webhook\nurl_file: ../hook.url\n"),
    );
    write(m, "../hook.url", &format!("{}\n", r.url("in")));
    write(
        m,
        "notify/ops.yaml",
        &manifest(
            "Alert",
            "ops",
            &format!("provider: hook\nprojects: ['*']\nevents: [import.failed]\n{extra}"),
        ),
    );
}

fn bad_files(inbox: &std::path::Path, from: usize, n: usize) {
    for i in from..from + n {
        std::fs::write(inbox.join(format!("bad-{i:04}.csv")), "id,tag,n\nx,a,1\n").unwrap();
    }
}

async fn all_done(pool: &sqlx::PgPool, events: i64, secs: u64) {
    wait_i64(
        pool,
        secs,
        "every import failure an event",
        "SELECT count(*) FROM cpi_events WHERE kind = 'import.failed'",
        events,
    )
    .await
    .unwrap();
    wait_i64(
        pool,
        secs,
        "every delivery done",
        "SELECT count(*) FROM cpi_deliveries WHERE state <> 'pending'",
        events,
    )
    .await
    .unwrap();
}

/// Event ids received, in order, per project.
fn received(r: &Recorder) -> (Vec<String>, BTreeMap<String, Vec<i64>>) {
    let mut ids = Vec::new();
    let mut per_project: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for q in r.requests() {
        let b = q.json();
        ids.push(q.header("x-cpi-event-id").unwrap());
        per_project
            .entry(b["project"].as_str().unwrap().to_string())
            .or_default()
            .push(b["events"][0]["seq"].as_i64().unwrap());
    }
    (ids, per_project)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_down_then_back_gets_every_event_once_in_order() {
    let db = TestDb::new().await;
    let s = Setup::new(
        &db,
        &[
            ("a", "{table: events, mode: append}"),
            ("b", "{table: events, mode: append}"),
        ],
    );
    let pool = db.pool().await;
    events_table(&pool).await;
    let r = Recorder::start().await;
    r.set_up(false);
    alert(&s.manifests(), &r, "");
    let mut d = Daemon::start(&db, &s.manifests(), &s.log("d.log"), &[]);
    bad_files(&s.inbox("a"), 0, 4);
    bad_files(&s.inbox("b"), 0, 4);
    wait_i64(
        &pool,
        30,
        "the failures",
        "SELECT count(*) FROM cpi_events WHERE kind = 'import.failed'",
        8,
    )
    .await
    .unwrap();
    // Down for a while: attempts fail and are retried with backoff.
    crate::support::wait::wait_at_least(
        &pool,
        30,
        "failed attempts",
        "SELECT count(*) FROM cpi_delivery_attempts WHERE NOT ok",
        4,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(r.requests().is_empty());
    r.set_up(true);
    all_done(&pool, 8, 60).await;
    let (ids, per_project) = received(&r);
    assert_eq!(ids.len(), 8, "{ids:?}\n{}", d.log());
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 8, "each once");
    for (p, seqs) in &per_project {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{p}: {seqs:?}");
    }
    assert_eq!(
        scalar_i64(
            &pool,
            "SELECT count(*) FROM cpi_deliveries WHERE state = 'sent'"
        )
        .await,
        8
    );
    d.stop(10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_delivery_sends_again_once_with_the_same_event_id() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("a", "{table: events, mode: append}")]);
    let pool = db.pool().await;
    events_table(&pool).await;
    let r = Recorder::start().await;
    r.set_delay(Duration::from_secs(30));
    alert(&s.manifests(), &r, "");
    let mut d = Daemon::start(&db, &s.manifests(), &s.log("d.log"), &[]);
    bad_files(&s.inbox("a"), 0, 3);
    r.wait(1, Duration::from_secs(30)).await;
    // Received, not yet answered: killed now, the daemon never learns it was delivered.
    d.signal("-KILL");
    d.wait(Duration::from_secs(10));
    r.set_delay(Duration::ZERO);
    let mut d2 = Daemon::start(&db, &s.manifests(), &s.log("d2.log"), &[]);
    all_done(&pool, 3, 60).await;
    let (ids, _) = received(&r);
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 3, "no event lost: {ids:?}");
    assert!(
        ids.len() <= 4,
        "at most one duplicate for the one kill: {ids:?}"
    );
    assert_eq!(
        ids[0], ids[1],
        "the duplicate carries the same event id: {ids:?}"
    );
    d2.stop(10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_event_once() {
    let db = TestDb::new().await;
    let s = Setup::new(
        &db,
        &[
            ("a", "{table: events, mode: append}"),
            ("b", "{table: events, mode: append}"),
            ("c", "{table: events, mode: append}"),
        ],
    );
    let pool = db.pool().await;
    events_table(&pool).await;
    let r = Recorder::start().await;
    // Slow answers make the replicas' sends overlap.
    r.set_delay(Duration::from_millis(100));
    alert(&s.manifests(), &r, "");
    // One Alert per project as well: sends of different Alerts overlap
    // across replicas (an Alert's own sends are serialized by its lock).
    for p in ["a", "b", "c"] {
        write(
            &s.manifests(),
            &format!("notify/ops-{p}.yaml"),
            &manifests::alert(
                &format!("ops-{p}"),
                "hook",
                &format!("[{p}]"),
                "import.failed",
            ),
        );
    }
    let mut one = Daemon::start(&db, &s.manifests(), &s.log("one.log"), &[]);
    let mut two = Daemon::start(&db, &s.manifests(), &s.log("two.log"), &[]);
    for p in ["a", "b", "c"] {
        bad_files(&s.inbox(p), 0, 10);
    }
    wait_i64(
        &pool,
        90,
        "every delivery done",
        "SELECT count(*) FROM cpi_deliveries WHERE state <> 'pending'",
        60,
    )
    .await
    .unwrap();
    // Each event twice (its project's Alert and `ops`), each pair once.
    let mut per_alert: BTreeMap<(String, String), usize> = BTreeMap::new();
    for q in r.requests() {
        let b = q.json();
        *per_alert
            .entry((
                b["alert"].as_str().unwrap().to_string(),
                q.header("x-cpi-event-id").unwrap(),
            ))
            .or_default() += 1;
    }
    assert_eq!(per_alert.len(), 60, "{per_alert:?}");
    assert!(
        per_alert.values().all(|&n| n == 1),
        "each event once per alert: {per_alert:?}"
    );
    let (_, per_project) = received(&r);
    for (p, seqs) in &per_project {
        let mut of_ops: Vec<i64> = Vec::new();
        for q in r.requests() {
            let b = q.json();
            if b["alert"] == "ops" && b["project"] == p.as_str() {
                of_ops.push(b["events"][0]["seq"].as_i64().unwrap());
            }
        }
        assert!(
            of_ops.windows(2).all(|w| w[0] < w[1]),
            "{p}: {of_ops:?} of {seqs:?}"
        );
    }
    let (l1, l2) = (one.log(), two.log());
    assert!(
        l1.contains("notification sent") && l2.contains("notification sent"),
        "both replicas send"
    );
    one.stop(10);
    two.stop(10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_failures_under_max_per_hour_ten_are_at_most_ten_messages() {
    let db = TestDb::new().await;
    let s = Setup::new(&db, &[("a", "{table: events, mode: append}")]);
    let pool = db.pool().await;
    events_table(&pool).await;
    let r = Recorder::start().await;
    alert(&s.manifests(), &r, "max_per_hour: 10\n");
    let mut d = Daemon::start(&db, &s.manifests(), &s.log("d.log"), &["--workers", "2"]);
    bad_files(&s.inbox("a"), 0, 1000);
    all_done(&pool, 1000, 240).await;
    let got = r.requests();
    assert!(got.len() <= 10, "{} messages", got.len());
    assert_eq!(got.len(), 10, "the hour's ten: {}", d.log());
    let last = got.last().unwrap().json();
    let held = last["suppressed"].as_u64().unwrap();
    assert!(held > 0, "{last}");
    assert!(
        last["text"]
            .as_str()
            .unwrap()
            .contains(&format!("{held} more suppressed")),
        "{last}"
    );
    let suppressed = scalar_i64(
        &pool,
        "SELECT count(*) FROM cpi_deliveries WHERE state = 'suppressed'",
    )
    .await;
    assert_eq!(
        suppressed, 990,
        "every other event is recorded as suppressed"
    );
    d.stop(10);
}
