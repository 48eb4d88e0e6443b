//! `cpi_events` (DESIGN §9): written by the statement of its cause, holding
//! no row value, pruned with the history.

use std::time::Duration;

use cpi::store::events::{self, EventFilter, EventKind, NewEvent, Severity};
use cpi::store::jobs::JobStatus;
use serde_json::json;

use crate::support::import::Env;

async fn events_of(env: &Env) -> Vec<events::Event> {
    let filter = EventFilter {
        limit: 100,
        ..Default::default()
    };
    events::list(&env.pool, &filter).await.unwrap()
}

#[tokio::test]
async fn a_rejected_file_and_skipped_rows_are_events_and_a_clean_file_is_none() {
    let env =
        Env::new(json!({"table": "t", "mode": "append", "on_error": "skip_rows", "max_errors": 1}))
            .await;
    env.exec("CREATE TABLE t (id int NOT NULL)").await;

    let clean = env.import("clean.csv", b"id\n1\n2\n").await;
    assert_eq!(clean.status, JobStatus::Succeeded);
    assert!(events_of(&env).await.is_empty(), "a clean file is no event");

    let skipped = env.import("skipped.csv", b"id\n3\nsecret-value-x\n").await;
    assert_eq!(skipped.status, JobStatus::Succeeded);
    let failed = env
        .import("bad.csv", b"id\nsecret-value-y\nsecret-value-z\n")
        .await;
    assert_eq!(failed.status, JobStatus::Failed);

    let all = events_of(&env).await;
    assert_eq!(all.len(), 2, "{all:?}");
    let (newest, oldest) = (&all[0], &all[1]);
    assert_eq!(oldest.kind, "import.rejected_rows");
    assert_eq!(oldest.severity, "warn");
    assert_eq!(oldest.job_id, Some(skipped.job_id));
    assert_eq!(oldest.payload["rows_rejected"], 1);
    assert_eq!(newest.kind, "import.failed");
    assert_eq!(newest.severity, "error");
    assert_eq!(newest.job_id, Some(failed.job_id));
    assert_eq!(newest.project.as_deref(), Some("p"));
    assert_eq!(newest.target_table.as_deref(), Some("t"));
    assert_eq!(newest.payload["file"], "bad.csv");
    assert!(newest.seq > oldest.seq);
    // The job's error quotes the bad value; the event never does.
    for e in &all {
        assert!(
            !e.payload.to_string().contains("secret-value"),
            "a row value in {e:?}"
        );
    }
}

#[tokio::test]
async fn a_failed_reconcile_and_corrected_drift_are_events_of_their_run() {
    let env = Env::new(json!({"table": "t"})).await;
    let pool = env.pool.clone();
    let run = |status: cpi::store::ReconcileStatus, drift: usize| {
        let pool = pool.clone();
        async move {
            let counts = cpi::plan::Counts {
                create: 0,
                update: 0,
                delete: 0,
                drift,
            };
            cpi::store::insert_run(
                &pool,
                &cpi::store::NewRun {
                    owner: "cpi",
                    trigger: cpi::store::ReconcileTrigger::Cli,
                    revision: Some("abc123"),
                    status,
                    counts: &counts,
                    diff: "",
                    error: Some("manifests/broken.yaml: invalid"),
                    started_at: chrono::Utc::now(),
                },
            )
            .await
            .unwrap()
        }
    };
    run(cpi::store::ReconcileStatus::Succeeded, 0).await;
    assert!(
        events_of(&env).await.is_empty(),
        "a quiet reconcile is no event"
    );
    let failed = run(cpi::store::ReconcileStatus::Failed, 0).await;
    let drifted = run(cpi::store::ReconcileStatus::Succeeded, 2).await;
    let all = events_of(&env).await;
    let kinds: Vec<(&str, Option<uuid::Uuid>)> =
        all.iter().map(|e| (e.kind.as_str(), e.run_id)).collect();
    assert_eq!(
        kinds,
        vec![
            ("drift.corrected", Some(drifted)),
            ("reconcile.failed", Some(failed))
        ]
    );
    assert_eq!(all[0].payload["drifted"], 2);
    assert_eq!(all[1].payload["revision"], "abc123");
}

#[tokio::test]
async fn an_event_commits_or_rolls_back_with_its_transaction() {
    let env = Env::new(json!({"table": "t"})).await;
    let event = NewEvent {
        kind: EventKind::ProjectPaused,
        severity: Severity::Info,
        project: Some("p"),
        table: None,
        job_id: None,
        run_id: None,
        payload: json!({"by": "test"}),
    };
    let mut tx = env.pool.begin().await.unwrap();
    events::record(&mut *tx, &event).await.unwrap();
    tx.rollback().await.unwrap();
    assert!(events_of(&env).await.is_empty());
    let mut tx = env.pool.begin().await.unwrap();
    let id = events::record(&mut *tx, &event).await.unwrap();
    tx.commit().await.unwrap();
    let all = events_of(&env).await;
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].id, all[0].kind.as_str()), (id, "project.paused"));
}

#[tokio::test]
async fn events_are_pruned_with_the_history() {
    let env = Env::new(json!({"table": "t"})).await;
    env.exec(
        "INSERT INTO cpi_events (kind, severity, project, at) VALUES
           ('import.failed', 'error', 'p', now() - interval '100 days'),
           ('import.failed', 'error', 'p', now())",
    )
    .await;
    let pruned = cpi::daemon::prune::prune(&env.pool, Duration::from_secs(90 * 86_400))
        .await
        .unwrap();
    assert_eq!(pruned.events, 1);
    assert_eq!(events_of(&env).await.len(), 1, "the recent event stays");
}
