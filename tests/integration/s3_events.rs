//! Bucket event notifications (issue #25): moto's S3 sends `ObjectCreated`
//! events to moto's SQS on loopback; a project with
//! `storage.events.queue_url` queues each new object at once, the listing
//! stays as the backfill (the queue deleted mid-run, everything is still
//! imported), and a foreign message is dropped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::daemon::{csv_rows, events_table, Daemon};
use crate::support::db::scalar_i64;
use crate::support::fs::manifest;
use crate::support::manifests::connection_to;
use crate::support::s3::{self, S3Server, PLANTED_SECRET, TEST_KEY_ID};
use crate::support::wait::wait_i64;
use crate::support::{write, TestDb};

const BUCKET: &str = "cpi-events";

fn sqs(endpoint: &str) -> aws_sdk_sqs::Client {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let conf = aws_sdk_sqs::Config::builder()
        .http_client(http)
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            TEST_KEY_ID,
            "test-secret",
            None,
            None,
            "tests",
        ))
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

fn env_keys() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", TEST_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", PLANTED_SECRET),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        ),
    ]
}

/// When each key's job was queued, relative to its upload.
async fn latencies(
    pool: &sqlx::PgPool,
    uploaded: &HashMap<String, Instant>,
    t0: Instant,
    at0: chrono::DateTime<chrono::Utc>,
) -> Vec<Duration> {
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT file_name, min(created_at) FROM cpi_import_jobs GROUP BY file_name")
            .fetch_all(pool)
            .await
            .unwrap();
    let mut out: Vec<Duration> = rows
        .into_iter()
        .filter_map(|(name, at)| {
            let up = uploaded.get(&name)?;
            let queued = t0 + (at - at0).to_std().ok()?;
            Some(queued.saturating_duration_since(*up))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_events_queue_objects_at_once_and_the_listing_backfills_without_the_queue() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    events_table(&pool).await;
    let server = S3Server::start().await;
    let c = s3::client(&server.endpoint());
    s3::create_bucket(&c, BUCKET).await;
    let q = sqs(&server.endpoint());
    let queue_url = q
        .create_queue()
        .queue_name("cpi-new-objects")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let arn = q
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    c.put_bucket_notification_configuration()
        .bucket(BUCKET)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(arn)
                        .events(Event::S3ObjectCreated)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    // A foreign message in the queue: logged and dropped.
    q.send_message()
        .queue_url(&queue_url)
        .message_body("{\"hello\": \"not an S3 event\"}")
        .send()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("manifests");
    write(
        &m,
        "connections/target.yaml",
        &connection_to("target", &db, "the test database"),
    );
    write(&m, "target.pass", "pw-1\n");
    let storage = format!(
        "storage: {{endpoint: \"{0}\", region: us-east-1, allow_http: true, path_style: true, events: {{queue_url: \"{1}\"}}}}",
        server.endpoint(),
        queue_url
    );
    write(&m, "projects/ev.yaml", &manifest("Project", "ev", &format!("connection: target\nconfig:\n  inbox: s3://{BUCKET}/ev/\n  {storage}\n  defaults: {{table: events, mode: append}}\n")));
    write(&m, "projects/ls.yaml", &manifest("Project", "ls", &format!("connection: target\nconfig:\n  inbox: s3://{BUCKET}/ls/\n  {}\n  defaults: {{table: events, mode: append}}\n", s3::storage_yaml(&server.endpoint()))));
    let env = env_keys();
    let mut d = Daemon::start_env(
        &db,
        &m,
        &dir.path().join("d.log"),
        &["--rescan", "20s", "--workers", "2"],
        &env,
    );
    d.wait_log("cpi is running", Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1,000 objects with events on, ten uploads at a time: each imported
    // once, most queued by their event. (With 1,000 concurrent uploads,
    // moto serves the PUTs before it sends the first event: see
    // docs/benchmarks.md.)
    let n = 1000u64;
    let t = Instant::now();
    let (b0, bat0) = (Instant::now(), chrono::Utc::now());
    let mut bulk = HashMap::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        let mut puts = tokio::task::JoinSet::new();
        for &i in chunk {
            let c = c.clone();
            puts.spawn(async move {
                let name = format!("f{i:04}.csv");
                s3::put(&c, BUCKET, &format!("ev/{name}"), csv_rows(i, 1, "ev")).await;
                (name, Instant::now())
            });
        }
        while let Some(r) = puts.join_next().await {
            let (name, at) = r.unwrap();
            bulk.insert(name, at);
        }
    }
    let uploads = t.elapsed();
    wait_i64(
        &pool,
        300,
        "every object's row",
        "SELECT count(*) FROM events",
        n as i64,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let all_in = t.elapsed();
    let by_event = d.log().matches("bucket event: queued").count();
    let b = latencies(&pool, &bulk, b0, bat0).await;
    assert_eq!(b.len(), n as usize);
    let pct = |p: usize| b[(b.len() * p / 100).min(b.len() - 1)];
    eprintln!(
        "bucket events: {n} objects uploaded in {uploads:?}, all imported in {all_in:?}, {by_event} queued by their event; upload to queued p50 {:?} p90 {:?} max {:?}",
        pct(50),
        pct(90),
        b[b.len() - 1]
    );
    assert!(
        by_event as u64 > n * 9 / 10,
        "nearly all queued by their event ({by_event}): {}",
        d.log()
    );
    assert!(
        d.log().contains("bucket events: a message dropped"),
        "the foreign message"
    );
    assert!(!d.log().contains(PLANTED_SECRET));

    // Latency, upload to queued: events against the listing alone.
    let t0 = Instant::now();
    let at0 = chrono::Utc::now();
    let mut uploaded = HashMap::new();
    for i in 0..10u64 {
        for p in ["ev", "ls"] {
            let name = format!("{p}-lat{i:02}.csv");
            s3::put(
                &c,
                BUCKET,
                &format!("{p}/{name}"),
                csv_rows(10_000 + i * 2 + u64::from(p == "ls"), 1, p),
            )
            .await;
            uploaded.insert(name, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    wait_i64(
        &pool,
        60,
        "the latency rows",
        "SELECT count(*) FROM events",
        n as i64 + 20,
    )
    .await
    .unwrap();
    let of = |p: &str| -> HashMap<String, Instant> {
        uploaded
            .iter()
            .filter(|(k, _)| k.starts_with(p))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    let ev = latencies(&pool, &of("ev-"), t0, at0).await;
    let ls = latencies(&pool, &of("ls-"), t0, at0).await;
    assert_eq!((ev.len(), ls.len()), (10, 10));
    let (ev_med, ls_med) = (ev[5], ls[5]);
    eprintln!("bucket events: {n} objects imported in {all_in:?}; upload to queued, median of 10: events {ev_med:?} (max {:?}), listing every 20 s {ls_med:?} (max {:?})", ev[9], ls[9]);
    assert!(
        ev_med < ls_med,
        "events {ev_med:?} beat the listing {ls_med:?}"
    );

    // The queue deleted mid-run: the listing still imports everything.
    q.delete_queue().queue_url(&queue_url).send().await.unwrap();
    for i in 0..20u64 {
        s3::put(
            &c,
            BUCKET,
            &format!("ev/late{i:02}.csv"),
            csv_rows(20_000 + i, 1, "late"),
        )
        .await;
    }
    wait_i64(
        &pool,
        60,
        "the late rows",
        "SELECT count(*) FROM events WHERE tag = 'late'",
        20,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    // The verdicts are written once the target committed: wait for them,
    // then no job more than one per object.
    wait_i64(
        &pool,
        60,
        "every verdict",
        "SELECT count(*) FROM cpi_import_jobs WHERE status = 'succeeded'",
        n as i64 + 40,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let twice: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT file_name, status, error FROM cpi_import_jobs WHERE file_name IN
           (SELECT file_name FROM cpi_import_jobs GROUP BY file_name HAVING count(*) > 1)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM cpi_import_jobs").await,
        n as i64 + 40,
        "each object imported once: {twice:?}\n{}",
        d.log()
    );
    d.stop(10);
}
