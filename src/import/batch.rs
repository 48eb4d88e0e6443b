//! A batch of one table's files in one target transaction (issue 30):
//! each file is made ready as it would be alone ([`super::ready`]), then
//! the batch loads its files in one transaction, in two passes at most
//! (see `load_in_one`): first straight into the transaction
//! (`load::Within::Shared`), and when a file's verdict is not a clean
//! success, again from the start with a savepoint and its own ledger row
//! per file (`load::Within::Batch`), where a bad file rolls back to its
//! savepoint alone and gets its verdict (failed); a duplicate inside the
//! batch finds the first copy's ledger row in the same transaction. The
//! batch commits once. Exactly once and all or nothing hold per file: a
//! file's rows and its ledger row commit together or not at all.
//!
//! Files follow each other in the batch's order; consecutive files with
//! the same target, table and `date_order` share a transaction (a batch
//! from the queue is one table's, so nearly always one). The verdicts are
//! written in one statement ([`store::batch::finish`]).

use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use super::context::Loaded;
use super::error::ImportError;
use super::failure::Failure;
use super::job::{outcome_details, record_unfinished, Unfinished};
use super::load::{self, Within};
use super::prepare::Catalog;
use super::ready::{conclude, prepare, Claim, JobOutcome, Known, Prepared};
use super::{target, targets};
use crate::location::FileRef;
use crate::store;
use crate::store::jobs::{self, JobError, JobStatus};

/// One claimed job of a batch, with what its claim read along.
pub struct BatchJob<'a> {
    /// The job's row as the claim left it.
    pub job: &'a jobs::Job,
    /// Its file.
    pub file: &'a FileRef,
    /// The versions of its project and connection rows.
    pub target_version: Option<&'a str>,
    /// Whether a file of its size went into its table before.
    pub size_seen: bool,
}

/// Runs a batch that the daemon's queue claimed (and so started), in
/// order; one verdict, or the reason there is none, per job, in the same
/// order. Verdicts are recorded in one statement; a job without one is
/// recorded as [`super::job::run_queued`] records it (a retry, a wait, failed).
pub async fn run_batch(
    mgmt: &PgPool,
    batch: &[BatchJob<'_>],
    worker: &str,
    known: &mut Known,
) -> Vec<Result<JobOutcome, Unfinished>> {
    let mut results: Vec<Option<Result<JobOutcome, ImportError>>> = Vec::new();
    let mut ready: Vec<(usize, Prepared)> = Vec::new();
    let t = std::time::Instant::now();
    let mut sizes = std::collections::HashSet::new();
    for (i, b) in batch.iter().enumerate() {
        // A file the size of an earlier one of the batch is a likely
        // duplicate too: hashed first, it is found in the ledger row the
        // earlier one wrote in this transaction before any row moves
        // (loaded, its rows could break a key before the ledger is asked).
        let seen_here = !sizes.insert(b.job.file_size);
        let mut claim = Claim {
            target_version: b.target_version,
            size_seen: Some(b.size_seen || seen_here),
            known,
        };
        match prepare(mgmt, b.job, b.file, Some(&mut claim)).await {
            Ok(p) => {
                results.push(None);
                ready.push((i, p));
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    let prepare_ms = ms(t);
    let t = std::time::Instant::now();
    // Runs of files that may share one transaction.
    let mut ready = ready.into_iter().peekable();
    while let Some(first) = ready.next() {
        let mut run = vec![first];
        while let Some(next) = ready.next_if(|(_, p)| same_transaction(&run[0].1, p)) {
            run.push(next);
        }
        for (i, r) in load_run(run).await {
            results[i] = Some(r);
        }
    }
    let load_ms = ms(t);
    let t = std::time::Instant::now();
    let recorded = record(mgmt, batch, worker, results).await;
    tracing::debug!(
        files = batch.len(),
        prepare_ms,
        load_ms,
        record_ms = ms(t),
        "batch timings"
    );
    recorded
}

/// Milliseconds since `t`, for the debug timings.
fn ms(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Whether two prepared files may load in one transaction: the same
/// target, table and session settings.
fn same_transaction(a: &Prepared, b: &Prepared) -> bool {
    a.connection_id == b.connection_id
        && a.url.expose() == b.url.expose()
        && a.ctx.opts.table == b.ctx.opts.table
        && a.ctx.opts.date_order == b.ctx.opts.date_order
}

/// Whether a file's load result stands once its batch's transaction
/// ended: a verdict on the file's content (failed) always does; rows and
/// ledger rows (succeeded), and a duplicate (which may repeat a file of
/// the same batch), only when the batch committed.
fn stands(result: &Result<Loaded, Failure>, committed: bool) -> bool {
    match result {
        Ok(_) => committed,
        Err(Failure::Bad { .. } | Failure::Checks { .. } | Failure::Changed(_)) => true,
        Err(Failure::Transient(_) | Failure::NeedsSavepoint(_)) => false,
    }
}

/// Loads one run of files in one transaction on one connection.
async fn load_run(run: Vec<(usize, Prepared)>) -> Vec<(usize, Result<JobOutcome, ImportError>)> {
    let (id, url) = (run[0].1.connection_id, run[0].1.url.clone());
    let project = run[0].1.ctx.project.clone();
    let mut conn = match targets::take(id, &url).await {
        Some(c) => c,
        None => match target::connect(&url, &project).await {
            Ok(c) => c,
            Err(e) => return fail_all(run, e),
        },
    };
    let (loads, committed) = match load_in_one(&mut conn, &run).await {
        Ok((loads, committed)) => (loads, committed),
        Err(e) => {
            let _ = conn.close().await;
            let e = ImportError::TargetTransient { project, source: e };
            return fail_all(run, e);
        }
    };
    let mut out = Vec::with_capacity(run.len());
    let mut lost = None;
    for ((i, p), result) in run.into_iter().zip(loads) {
        if !stands(&result, committed) {
            let source = match result {
                Err(Failure::Transient(e)) => e,
                _ => lost_commit(),
            };
            lost.get_or_insert(());
            let e = ImportError::TargetTransient {
                project: p.ctx.project.clone(),
                source,
            };
            out.push((i, Err(e)));
            continue;
        }
        out.push((i, conclude(p, result)));
    }
    if committed && lost.is_none() {
        targets::give_back(id, &url, conn);
    } else {
        let _ = conn.close().await;
    }
    out
}

/// The run's loads, then the commit: each file's result, and whether the
/// batch committed. `Err`: the transaction could not begin.
///
/// The first pass loads every file in the batch's transaction itself, no
/// savepoint (`Within::Shared`): per file only its COPY and its ledger
/// row. The first file whose verdict is not a clean success ends it; the
/// transaction is rolled back and the second pass loads every file again,
/// each in its savepoint (`Within::Batch`), so that file's verdict stands
/// alone and the others commit. A bad file thus costs its batch one
/// more pass, and a batch of good files three round trips a file less.
async fn load_in_one(
    conn: &mut PgConnection,
    run: &[(usize, Prepared)],
) -> Result<(Vec<Result<Loaded, Failure>>, bool), sqlx::Error> {
    let first = &run[0].1.ctx;
    target::ensure_ledger(conn).await?;
    let table = first.opts.table.quoted();
    let mut tx = load::begin(conn, &table, first.opts.date_order).await?;
    let mut loads = Vec::with_capacity(run.len());
    let mut catalog = Catalog::default();
    for (_, p) in run {
        let r = load::load(&mut tx, &p.ctx, None, Within::Shared(&mut catalog)).await;
        let clean = matches!(&r, Ok(l) if l.status == JobStatus::Succeeded);
        loads.push(r);
        if !clean {
            break;
        }
    }
    if loads.len() == run.len()
        && loads.iter().all(Result::is_ok)
        && ledger(&mut tx, run, &loads).await?
    {
        let committed = tx.commit().await.is_ok();
        return Ok((loads, committed));
    }
    tx.rollback().await?;
    let mut tx = load::begin(conn, &table, first.opts.date_order).await?;
    let mut loads = Vec::with_capacity(run.len());
    let mut broken = None;
    for (_, p) in run {
        if let Some(text) = &broken {
            loads.push(Err(Failure::Transient(sqlx::Error::Protocol(format!(
                "not tried: the batch's transaction failed: {text}"
            )))));
            continue;
        }
        let r = load::load(&mut tx, &p.ctx, None, Within::Batch).await;
        if let Err(Failure::Transient(e)) = &r {
            broken = Some(e.to_string());
        }
        loads.push(r);
    }
    if broken.is_some() {
        let _ = tx.rollback().await;
        return Ok((loads, false));
    }
    let committed = tx.commit().await.is_ok();
    Ok((loads, committed))
}

/// The shared pass's ledger rows, in one statement: whether every one was
/// new (a duplicate, of an earlier batch or inside this one, sends the
/// batch to its pass with savepoints, which finds it before its rows move).
async fn ledger(
    tx: &mut PgConnection,
    run: &[(usize, Prepared)],
    loads: &[Result<Loaded, Failure>],
) -> Result<bool, sqlx::Error> {
    let rows: Vec<target::LedgerRow<'_>> = run
        .iter()
        .zip(loads)
        .filter_map(|((_, p), l)| {
            let l = l.as_ref().ok()?;
            Some(target::LedgerRow {
                sha256: &l.sha256,
                job_id: p.ctx.job_id,
                file_name: &p.ctx.file,
                rows: l.ledger_rows?,
            })
        })
        .collect();
    if rows.is_empty() {
        return Ok(true);
    }
    let ctx = &run[0].1.ctx;
    target::ledger_insert_all(tx, &ctx.project, &ctx.opts.table.quoted(), &rows).await
}

/// The error of a file whose load was rolled back with its batch.
fn lost_commit() -> sqlx::Error {
    sqlx::Error::Protocol("the batch's commit failed; the file is tried again".into())
}

/// Every file of a run gets the run's failure (one error, told again for
/// each file: the errors carry no shared state).
fn fail_all(
    run: Vec<(usize, Prepared)>,
    e: ImportError,
) -> Vec<(usize, Result<JobOutcome, ImportError>)> {
    let mut out: Vec<_> = run
        .iter()
        .skip(1)
        .map(|(i, p)| (*i, Err(told_again(&e, &p.ctx.project))))
        .collect();
    out.insert(0, (run[0].0, Err(e)));
    out
}

/// A connection-level error, for one more file of the run: same kind
/// (so the same policy and metrics), same words.
fn told_again(e: &ImportError, project: &str) -> ImportError {
    let project = project.to_string();
    let source = sqlx::Error::Protocol(e.to_string());
    match e {
        ImportError::TargetUnreachable { .. } => ImportError::TargetUnreachable { project, source },
        ImportError::ConnectTimeout { after, .. } => ImportError::ConnectTimeout {
            project,
            after: *after,
        },
        _ => ImportError::TargetTransient { project, source },
    }
}

/// Writes the batch's verdicts in one statement, and each job without
/// one as its policy says.
async fn record(
    mgmt: &PgPool,
    batch: &[BatchJob<'_>],
    worker: &str,
    results: Vec<Option<Result<JobOutcome, ImportError>>>,
) -> Vec<Result<JobOutcome, Unfinished>> {
    let done: Vec<&JobOutcome> = results.iter().flatten().flatten().collect();
    let details: Vec<Option<serde_json::Value>> = done.iter().map(|o| outcome_details(o)).collect();
    let verdicts: Vec<store::batch::Verdict<'_>> = done
        .iter()
        .zip(&details)
        .map(|(o, d)| store::batch::Verdict {
            id: o.job_id,
            status: o.status,
            counts: &o.counts,
            error: o.error.as_deref(),
            details: d.as_ref(),
            sha256: o.sha256.as_deref(),
        })
        .collect();
    let written = store::batch::finish(mgmt, &verdicts)
        .await
        .map_err(|e| e.to_string());
    drop(verdicts);
    let mut out = Vec::with_capacity(batch.len());
    for (b, r) in batch.iter().zip(results) {
        let r = r.unwrap_or_else(|| Err(not_run(b.job.id)));
        out.push(match (r, &written) {
            (Ok(o), Ok(())) => Ok(o),
            (Ok(_), Err(text)) => {
                // As for one job: not written, so its lease expires and
                // it is taken over (a duplicate by the ledger, if it committed).
                let error =
                    ImportError::Management(JobError::Db(sqlx::Error::Protocol(text.clone())));
                let action = super::error::error_policy(&error, 0);
                Err(Unfinished { error, action })
            }
            (Err(e), _) => Err(record_unfinished(mgmt, b.job, worker, e, true).await),
        });
    }
    out
}

/// A job the batch did not reach (never: every job gets a result).
fn not_run(id: Uuid) -> ImportError {
    ImportError::Management(JobError::Db(sqlx::Error::Protocol(format!(
        "job {id} was not run in its batch"
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::jobs::{Counts, JobStatus};

    fn loaded(status: JobStatus) -> Result<Loaded, Failure> {
        Ok(Loaded {
            sha256: "s".into(),
            status,
            counts: Counts::default(),
            note: None,
            errors: Vec::new(),
            errors_total: 0,
            checks: Vec::new(),
            created: None,
            ledger_rows: None,
        })
    }

    #[test]
    fn loads_stand_only_when_the_batch_committed_and_bad_files_always() {
        for committed in [true, false] {
            assert_eq!(stands(&loaded(JobStatus::Succeeded), committed), committed);
            // A duplicate may repeat a file of the same batch, rolled back with it.
            assert_eq!(stands(&loaded(JobStatus::Duplicate), committed), committed);
            assert!(stands(&Err(Failure::bad("bad")), committed));
            assert!(stands(&Err(Failure::Changed("grew".into())), committed));
            assert!(!stands(
                &Err(Failure::Transient(sqlx::Error::PoolTimedOut)),
                committed
            ));
        }
    }

    #[test]
    fn an_error_told_again_keeps_its_kind() {
        let e = ImportError::ConnectTimeout {
            project: "p".into(),
            after: std::time::Duration::from_secs(5),
        };
        assert!(matches!(
            told_again(&e, "p"),
            ImportError::ConnectTimeout { .. }
        ));
        let e = ImportError::TargetUnreachable {
            project: "p".into(),
            source: sqlx::Error::PoolTimedOut,
        };
        assert!(matches!(
            told_again(&e, "p"),
            ImportError::TargetUnreachable { .. }
        ));
    }
}
