//! Health and Prometheus metrics.
//!
//! Most metrics are read from the management database at scrape time (jobs,
//! rows, reconcile runs, managed objects): the tables are the truth, they
//! survive restarts, and every replica reports the same numbers. Only what
//! exists nowhere else lives in [`Health`], the handle the daemon updates:
//! the last reconcile seen by this process and the watcher errors.
//!
//! A counter read from rows would go down when rows go (a prune, a retry
//! taking a failed job out of the totals): Prometheus reads that as a
//! restart and `rate()` shows a phantom spike. So every counter passes
//! through [`Counters`], kept in the process, which exposes the first
//! reading and then adds only what the rows grew by between scrapes.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::secret;
use crate::store::jobs::JobStatus;
use crate::store::{self, StoreError};

pub use crate::store::ReconcileStatus;

/// The last reconcile this process ran.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LastReconcile {
    /// How it ended.
    pub status: ReconcileStatus,
    /// The error of a failed or refused reconcile, secrets masked.
    pub error: Option<String>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
}

/// Counters made monotonic for the life of the process, per series.
///
/// Each series remembers its last reading from the rows and the value it
/// exposed. A reading above the last adds the difference; one below it (a
/// prune, from this process or any other, or a retry taking a failed job
/// out of the totals) adds nothing, and the next growth counts from the
/// lower reading. Rows pruned and added between two scrapes can hide that
/// many increments; nothing ever makes a counter decrease.
#[derive(Debug, Default)]
pub struct Counters {
    series: Mutex<std::collections::HashMap<String, Series>>,
}

#[derive(Debug, Clone, Copy)]
struct Series {
    reading: f64,
    exposed: f64,
}

/// How a reading of the rows moves a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// A scrape: growth since the last reading counts.
    Count,
    /// Just after this process pruned: the rows fell by what it deleted,
    /// and the next growth counts from here.
    Rebase,
}

impl Counters {
    /// The value to expose for `series` (name and labels) whose rows now
    /// say `reading`.
    pub fn observe(&self, series: &str, reading: f64) -> f64 {
        self.read(series, reading, Reading::Count)
    }

    fn read(&self, series: &str, reading: f64, how: Reading) -> f64 {
        let mut all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        match all.get_mut(series) {
            Some(s) => {
                if how == Reading::Count {
                    s.exposed += (reading - s.reading).max(0.0);
                }
                s.reading = reading;
                s.exposed
            }
            None => {
                all.insert(
                    series.to_string(),
                    Series {
                        reading,
                        exposed: reading,
                    },
                );
                reading
            }
        }
    }
}

/// State shared between the daemon and the HTTP API of one process.
///
/// The daemon calls [`Health::with_reconciler`] once, then
/// [`Health::reconciled`] after every reconcile and
/// [`Health::watcher_error`] whenever watching a folder fails.
#[derive(Debug, Default)]
pub struct Health {
    reconciler: bool,
    synced_once: AtomicBool,
    last: Mutex<Option<LastReconcile>>,
    watcher_errors: AtomicU64,
    target_errors: AtomicU64,
    /// Projects whose folders lie outside every `--inbox-root`, with why.
    refused: Mutex<std::collections::BTreeMap<String, String>>,
    /// The counters read from rows, kept monotonic.
    counters: Counters,
}

impl Health {
    /// For a process that serves the API alone (`cpi serve`): readiness
    /// depends on the database only.
    pub fn new() -> Self {
        Self::default()
    }

    /// For the daemon: not ready until its first reconcile succeeded, so a
    /// rollout whose manifests are broken never receives traffic. A later
    /// failure leaves it ready (the rows of the last good apply are still
    /// served) and shows in `/readyz` and the metrics.
    pub fn with_reconciler() -> Self {
        Health {
            reconciler: true,
            ..Self::default()
        }
    }

    /// Marks `project` as refused (its folders lie outside every
    /// `--inbox-root`); `true` when it was not marked so before (log it once).
    pub fn refuse_inbox(&self, project: &str, why: &str) -> bool {
        let mut r = self.refused.lock().unwrap();
        r.insert(project.to_string(), why.to_string()).as_deref() != Some(why)
    }

    /// Keeps only the refusals of `projects` (the rest were fixed or removed).
    pub fn keep_refused(&self, projects: &std::collections::BTreeSet<String>) {
        self.refused
            .lock()
            .unwrap()
            .retain(|p, _| projects.contains(p));
    }

    /// Projects refused by `--inbox-root`, with why (for `/readyz`).
    pub fn refused_inboxes(&self) -> std::collections::BTreeMap<String, String> {
        self.refused.lock().unwrap().clone()
    }

    /// Records the end of a reconcile (its error scrubbed).
    pub fn reconciled(&self, status: ReconcileStatus, error: Option<&str>) {
        if status == ReconcileStatus::Succeeded {
            self.synced_once.store(true, Ordering::SeqCst);
        }
        let last = LastReconcile {
            status,
            error: error.map(secret::scrub_known),
            finished_at: Utc::now(),
        };
        if let Ok(mut slot) = self.last.lock() {
            *slot = Some(last);
        }
    }

    /// Counts one failure to watch a folder.
    pub fn watcher_error(&self) {
        self.watcher_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one import that could not reach its target database (it is retried).
    pub fn target_error(&self) {
        self.target_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Imports since start that could not reach their target database.
    pub fn target_errors(&self) -> u64 {
        self.target_errors.load(Ordering::Relaxed)
    }

    /// Whether this process runs the reconciler.
    pub fn runs_reconciler(&self) -> bool {
        self.reconciler
    }

    /// Whether reconciles allow serving: always without a reconciler.
    pub fn reconcile_ready(&self) -> bool {
        !self.reconciler || self.synced_once.load(Ordering::SeqCst)
    }

    /// The last reconcile this process ran, if any.
    pub fn last_reconcile(&self) -> Option<LastReconcile> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// Watcher failures since start.
    pub fn watcher_errors(&self) -> u64 {
        self.watcher_errors.load(Ordering::Relaxed)
    }
}

/// The Prometheus text exposition (format 0.0.4) of every `cpi_*` metric.
/// A database that cannot be read gives `cpi_database_up 0` and the
/// in-process metrics, never an error: the scrape itself must not fail.
pub async fn render(pool: &PgPool, health: &Health) -> String {
    let mut out = String::new();
    let from_db = database_metrics(pool, &health.counters, Reading::Count).await;
    gauge(
        &mut out,
        "cpi_database_up",
        "Whether the management database answered this scrape.",
        &[(String::new(), f64::from(u8::from(from_db.is_ok())))],
    );
    match from_db {
        Ok(text) => out.push_str(&text),
        Err(e) => {
            tracing::warn!(error = %secret::scrub_known(&e.to_string()), "metrics: cannot read the management database");
        }
    }
    counter(
        &mut out,
        "cpi_watcher_errors_total",
        "Errors while watching manifests, secrets or inboxes, in this process.",
        &[(String::new(), health.watcher_errors() as f64)],
    );
    counter(
        &mut out,
        "cpi_import_target_errors_total",
        "Imports that could not reach their target database (retried), in this process.",
        &[(String::new(), health.target_errors() as f64)],
    );
    let ready = health.reconcile_ready();
    gauge(
        &mut out,
        "cpi_reconcile_ready",
        "1 once this process may serve: no reconciler, or its first reconcile succeeded.",
        &[(String::new(), f64::from(u8::from(ready)))],
    );
    if health.runs_reconciler() {
        // A persistent error is recorded as one run (one per distinct
        // error), so no counter of runs keeps growing while it lasts: this
        // gauge stays 1 instead, which an alert can hold `for:` a while.
        let failing = health
            .last_reconcile()
            .is_some_and(|l| l.status != ReconcileStatus::Succeeded);
        gauge(
            &mut out,
            "cpi_reconcile_failing",
            "1 while the last reconcile of this process failed or was refused.",
            &[(String::new(), f64::from(u8::from(failing)))],
        );
    }
    out
}

/// Runs `prune` (this process deleting history) with the counters read
/// just before and just after it: growth up to the prune is counted, the
/// fall it causes is not, and growth after it counts from the lower rows.
/// Imports that commit while it runs are the only ones it can hide (a
/// plain scrape after a prune elsewhere can hide a scrape interval's).
pub async fn around_prune<T>(
    pool: &PgPool,
    health: &Health,
    prune: impl std::future::Future<Output = T>,
) -> T {
    let _ = database_metrics(pool, &health.counters, Reading::Count).await;
    let out = prune.await;
    let _ = database_metrics(pool, &health.counters, Reading::Rebase).await;
    out
}

/// The metrics read from the database, as text; counters through `c`.
async fn database_metrics(pool: &PgPool, c: &Counters, how: Reading) -> Result<String, StoreError> {
    let stats = store::database_stats(pool).await?;
    let mut out = String::new();
    let observe = |series: &str, v: f64| c.read(series, v, how);
    let mono = |name: &str, samples: Vec<(String, f64)>| -> Vec<(String, f64)> {
        samples
            .into_iter()
            .map(|(l, v)| {
                let v = observe(&format!("{name}{l}"), v);
                (l, v)
            })
            .collect()
    };

    let samples: Vec<(String, f64)> = ReconcileStatus::ALL
        .iter()
        .map(|s| {
            let n = stats
                .runs
                .iter()
                .find(|r| r.status == *s)
                .map_or(0, |r| r.runs);
            (labels(&[("status", s.as_str())]), n as f64)
        })
        .collect();
    counter(
        &mut out,
        "cpi_reconcile_runs_total",
        "Reconcile runs recorded in cpi_reconcile_runs, by result.",
        &mono("cpi_reconcile_runs_total", samples),
    );
    let drift: i64 = stats
        .runs
        .iter()
        .filter(|r| r.status == ReconcileStatus::Succeeded)
        .map(|r| r.drifted)
        .sum();
    counter(
        &mut out,
        "cpi_drift_corrections_total",
        "Objects changed behind cpi's back and set back by a reconcile.",
        &mono(
            "cpi_drift_corrections_total",
            vec![(String::new(), drift as f64)],
        ),
    );
    if let Some(t) = stats.last_success {
        gauge(
            &mut out,
            "cpi_reconcile_last_success_timestamp_seconds",
            "When the last successful reconcile finished (Unix time).",
            &[(String::new(), t)],
        );
    }

    let samples: Vec<(String, f64)> = stats
        .objects
        .iter()
        .map(|o| {
            let pairs = [("kind", o.kind.as_str()), ("managed_by", &o.managed_by)];
            (labels(&pairs), o.objects as f64)
        })
        .collect();
    gauge(
        &mut out,
        "cpi_objects",
        "Connections and projects by owner (managed_by=\"\": not managed by any reconciler).",
        &samples,
    );

    let paused = store::pauses::list(pool).await.map_err(StoreError::Db)?;
    let samples: Vec<(String, f64)> = paused
        .iter()
        .map(|p| (labels(&[("project", &p.project)]), 1.0))
        .collect();
    gauge(
        &mut out,
        "cpi_project_paused",
        "1 for each paused project (cpi projects pause): its files wait in the queue.",
        &samples,
    );

    let tables = crate::freshness::current(pool, None).await?;
    let at = |t: &crate::freshness::TableFreshness| {
        labels(&[("project", &t.project), ("table", &t.table)])
    };
    let samples: Vec<(String, f64)> = tables
        .iter()
        .filter_map(|t| Some((at(t), t.last_import?.timestamp() as f64)))
        .collect();
    gauge(
        &mut out,
        "cpi_table_last_import_timestamp_seconds",
        "When the last file of each table with a freshness rule was imported (Unix time; absent: none yet).",
        &samples,
    );
    let samples: Vec<(String, f64)> = tables
        .iter()
        .map(|t| (at(t), f64::from(t.state as u8)))
        .collect();
    gauge(
        &mut out,
        "cpi_table_freshness_state",
        "Freshness of each table with a freshness rule: 0 fresh, 1 past warn_after, 2 past error_after.",
        &samples,
    );

    let count_of = |s: JobStatus| {
        let found = stats.jobs.iter().find(|j| j.status == s.as_str());
        found.map_or(0, |j| j.jobs)
    };
    let samples: Vec<(String, f64)> = JobStatus::ALL
        .iter()
        .map(|&s| (labels(&[("status", s.as_str())]), count_of(s) as f64))
        .collect();
    gauge(
        &mut out,
        "cpi_import_jobs",
        "Import jobs in cpi_import_jobs, by status.",
        &samples,
    );
    gauge(
        &mut out,
        "cpi_import_queue_depth",
        "Files waiting to be imported (jobs queued).",
        &[(String::new(), count_of(JobStatus::Queued) as f64)],
    );
    // The gauge above falls when a failed job is retried or pruned; this
    // counter keeps every job that reached the status (what an alert on
    // "files failed in the last hour" needs).
    let samples: Vec<(String, f64)> = [
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Duplicate,
    ]
    .iter()
    .map(|&s| (labels(&[("status", s.as_str())]), count_of(s) as f64))
    .collect();
    counter(
        &mut out,
        "cpi_import_jobs_finished_total",
        "Import jobs that finished, by status (a job retried and finished again counts again).",
        &mono("cpi_import_jobs_finished_total", samples),
    );

    let samples: Vec<(String, f64)> = stats
        .rows
        .iter()
        .map(|(k, n)| (labels(&[("outcome", k)]), *n as f64))
        .collect();
    counter(
        &mut out,
        "cpi_import_rows_total",
        "Rows of succeeded import jobs, by outcome.",
        &mono("cpi_import_rows_total", samples),
    );

    let d = &stats.durations;
    let (buckets, count) = cumulative(&d.bounds, &d.per_bucket);
    let name = "cpi_import_duration_seconds";
    header(
        &mut out,
        name,
        "Time from start to end of finished import jobs.",
        "histogram",
    );
    for (le, n) in &buckets {
        let series = format!("{name}_bucket{{le=\"{le}\"}}");
        let _ = writeln!(out, "{series} {}", observe(&series, *n as f64));
    }
    let inf = observe(&format!("{name}_bucket{{le=\"+Inf\"}}"), count as f64);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {inf}");
    let sum = observe(&format!("{name}_sum"), d.seconds);
    let _ = writeln!(out, "{name}_sum {sum}");
    let count = observe(&format!("{name}_count"), count as f64);
    let _ = writeln!(out, "{name}_count {count}");
    Ok(out)
}

/// Histogram buckets from per-bucket counts: `(le, jobs ≤ le)` for each
/// bound, and the total (the `+Inf` bucket). `per_bucket` has one entry per
/// bound plus one for the jobs above the last.
fn cumulative(bounds: &[f64], per_bucket: &[i64]) -> (Vec<(f64, i64)>, i64) {
    let mut running = 0;
    let buckets = bounds
        .iter()
        .zip(per_bucket)
        .map(|(&le, &n)| {
            running += n;
            (le, running)
        })
        .collect();
    (buckets, per_bucket.iter().sum())
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    header(out, name, help, "counter");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

fn gauge(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    header(out, name, help, "gauge");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// `{k="v",…}` with values escaped as the exposition format wants.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_accumulate_and_inf_counts_all() {
        let (b, count) = cumulative(&[0.1, 1.0], &[2, 0, 3]);
        assert_eq!(b, vec![(0.1, 2), (1.0, 2)]);
        assert_eq!(count, 5, "+Inf holds the 3 jobs above the last bound");
    }

    #[test]
    fn counters_never_decrease_and_count_growth_after_a_drop() {
        let c = Counters::default();
        assert_eq!(c.observe("x", 10.0), 10.0);
        assert_eq!(c.observe("x", 12.0), 12.0);
        // A prune: the rows say 0, the counter stays.
        assert_eq!(c.observe("x", 0.0), 12.0);
        // New rows count from the lower reading.
        assert_eq!(c.observe("x", 3.0), 15.0);
        assert_eq!(c.observe("y", 1.0), 1.0, "series are apart");
        // This process pruned: the fall is taken as the new floor.
        assert_eq!(c.read("x", 1.0, Reading::Rebase), 15.0);
        assert_eq!(c.observe("x", 2.0), 16.0);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("managed_by", "a\"b\\c\nd")]),
            r#"{managed_by="a\"b\\c\nd"}"#
        );
    }

    #[test]
    fn readiness_waits_for_the_first_successful_reconcile() {
        assert!(Health::new().reconcile_ready());
        let h = Health::with_reconciler();
        assert!(!h.reconcile_ready());
        h.reconciled(ReconcileStatus::Failed, Some("boom"));
        assert!(!h.reconcile_ready());
        h.reconciled(ReconcileStatus::Succeeded, None);
        assert!(h.reconcile_ready());
        h.reconciled(ReconcileStatus::Failed, Some("again"));
        assert!(h.reconcile_ready());
        assert_eq!(h.last_reconcile().unwrap().error.as_deref(), Some("again"));
    }
}
