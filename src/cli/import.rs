//! `cpi import` and `cpi jobs`: run jobs in the foreground, with a progress
//! bar on a terminal and one result line (or JSON) per file.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use uuid::Uuid;

use super::args::{Global, ImportArgs, JobsCommand, Output};
use super::context::{cli_actor, management_pool, print_list, print_one, print_value, signal};
use crate::id_prefix::IdPrefix;
use crate::import::{self, ImportError, JobOutcome, Progress};
use crate::location::FileRef;
use crate::secret;
use crate::store;
use crate::store::jobs::{self, JobStatus, ListFilter};

/// How many row errors a line of `cpi import` output shows (all are in the job).
const SHOWN_ERRORS: usize = 10;

fn worker() -> String {
    format!("cli:{}", std::process::id())
}

/// `cpi import`: one job per file, run here; Ctrl-C or SIGTERM rolls the
/// running one back and marks it failed.
pub async fn import(g: &Global, a: &ImportArgs) -> Result<ExitCode> {
    // Every argument checked before any job starts.
    let mut files = Vec::new();
    for f in &a.files {
        match FileRef::parse(&f.to_string_lossy()) {
            Err(m) => bail!("{m}"),
            Ok(FileRef::Local(_)) if !f.is_file() => bail!("{} is not a file", f.display()),
            Ok(FileRef::Local(_)) => files.push((f, FileRef::local(f))),
            Ok(object) => files.push((f, object)),
        }
    }
    let pool = management_pool(g).await?;
    store::migrate_if_empty(&pool).await?;
    let worker = worker();
    let mut all_ok = true;
    let mut outcomes = Vec::new();
    // The project and target URL, read again only when their rows change.
    let mut known = import::Known::default();
    for (f, file) in files {
        let created = match jobs::create_started(&pool, &a.project, &file, &worker).await {
            Ok(c) => c,
            Err(e) => return Err(active_job_hint(&pool, f, &file, e).await),
        };
        let id = created.job.id;
        let result = tokio::select! {
            r = run_with_progress(&pool, Foreground::Created(&created, &mut known), &worker, f) => r,
            signal = signal() => {
                // The import future is dropped with its target connection:
                // the server rolls the transaction back. The job says so,
                // and does not stay `running` to block the file.
                let message = format!("interrupted by {signal}: rolled back, nothing of the file was written");
                let _ = jobs::finish(&pool, id, JobStatus::Failed, &jobs::Counts::default(), Some(&message), None, None).await;
                bail!("{}: {message} (job {id}); run the import again", f.display());
            }
        };
        all_ok &= report(
            &f.display().to_string(),
            id,
            &result,
            a.output,
            &mut outcomes,
        );
    }
    if a.output.structured() {
        print_value(&outcomes, a.output)?;
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A file may have only one queued or running job (the daemon's queue
/// relies on it): say which one, and what to do when its worker died.
async fn active_job_hint(
    pool: &sqlx::PgPool,
    file: &std::path::Path,
    at: &FileRef,
    e: jobs::JobError,
) -> anyhow::Error {
    let duplicate =
        matches!(&e, jobs::JobError::Db(sqlx::Error::Database(d)) if d.is_unique_violation());
    if duplicate {
        if let Ok(Some(j)) = jobs::active_for(pool, at).await {
            return anyhow::anyhow!(
                "{} already has an active import job {} ({}, worker {}): wait for it to finish, \
                 or if its worker died, run `cpi jobs retry --force {}`",
                file.display(),
                j.id,
                j.status,
                j.worker.as_deref().unwrap_or("-"),
                j.id
            );
        }
    }
    e.into()
}

/// The job to run in the foreground.
enum Foreground<'a> {
    /// Made and started by `cpi import` ([`jobs::create_started`]).
    Created(&'a jobs::Created, &'a mut import::Known),
    /// An existing job, started now (`cpi jobs retry`).
    Existing(Uuid),
}

impl Foreground<'_> {
    async fn run(
        self,
        pool: &sqlx::PgPool,
        worker: &str,
        progress: import::ProgressFn<'_>,
    ) -> Result<JobOutcome, ImportError> {
        match self {
            Foreground::Created(c, known) => {
                import::run_created(pool, c, worker, progress, known).await
            }
            Foreground::Existing(id) => import::run_job(pool, id, worker, progress).await,
        }
    }
}

/// A progress bar on stderr when it is a terminal; none when piped.
async fn run_with_progress(
    pool: &sqlx::PgPool,
    job: Foreground<'_>,
    worker: &str,
    file: &std::path::Path,
) -> Result<JobOutcome, ImportError> {
    if !std::io::stderr().is_terminal() {
        return job.run(pool, worker, None).await;
    }
    let bar = indicatif::ProgressBar::new(std::fs::metadata(file).map_or(0, |m| m.len()));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    bar.set_message(name.clone());
    let update = |p: Progress| {
        bar.set_position(p.bytes);
        bar.set_message(format!("{name}: {} rows", p.rows));
    };
    let r = job.run(pool, worker, Some(&update)).await;
    bar.finish_and_clear();
    r
}

/// Prints one file's result; whether it counts as a success.
fn report(
    file: &str,
    id: Uuid,
    result: &Result<JobOutcome, ImportError>,
    output: Output,
    outcomes: &mut Vec<serde_json::Value>,
) -> bool {
    match result {
        Ok(o) => {
            let ok = o.status != JobStatus::Failed;
            if output.structured() {
                outcomes.push(serde_json::to_value(o).unwrap_or_default());
                return ok;
            }
            let c = &o.counts;
            println!(
                "{file}: {} into {} ({}): read {}, inserted {}, updated {}, deleted {}, rejected {} (job {})",
                o.status,
                o.target_table.as_deref().unwrap_or("-"),
                o.mode.map_or("-", |m| m.as_str()),
                c.rows_read,
                c.rows_inserted,
                c.rows_updated,
                c.rows_deleted,
                c.rows_rejected,
                o.job_id
            );
            if let Some(e) = &o.error {
                println!("  {}", secret::scrub_known(e));
            }
            for e in o.errors.iter().take(SHOWN_ERRORS) {
                if Some(&e.message) != o.error.as_ref() {
                    println!("  {}", e.message);
                }
            }
            if o.errors_total > SHOWN_ERRORS as u64 {
                println!(
                    "  … {} error(s) in all: cpi jobs show {}",
                    o.errors_total, o.job_id
                );
            }
            ok
        }
        Err(e) => {
            let text = secret::scrub_known(&e.to_string());
            if output.structured() {
                outcomes.push(serde_json::json!({
                    "job_id": id, "file_name": file, "status": JobStatus::Failed,
                    "error": text, "retryable": e.retryable(),
                }));
            } else {
                println!("{file}: failed: {text} (job {id})");
            }
            false
        }
    }
}

/// `cpi jobs list|show|retry`.
pub async fn jobs_command(g: &Global, cmd: &JobsCommand) -> Result<ExitCode> {
    let pool = management_pool(g).await?;
    store::migrate_if_empty(&pool).await?;
    match cmd {
        JobsCommand::List {
            project,
            status,
            limit,
            output,
        } => {
            let rows = jobs::list(
                &pool,
                &ListFilter {
                    project: project.clone(),
                    status: *status,
                    among: None,
                    limit: *limit,
                    offset: 0,
                },
            )
            .await?;
            print_list(
                &rows,
                *output,
                &[
                    "ID", "PROJECT", "FILE", "STATUS", "TABLE", "READ", "INSERTED", "UPDATED",
                    "DELETED", "REJECTED", "CREATED", "ERROR",
                ],
                |j| {
                    vec![
                        j.id.to_string(),
                        j.project_name.clone(),
                        j.file_name.clone(),
                        status_text(j),
                        j.target_table.clone().unwrap_or_else(|| "-".into()),
                        j.rows_read.to_string(),
                        j.rows_inserted.to_string(),
                        j.rows_updated.to_string(),
                        j.rows_deleted.to_string(),
                        j.rows_rejected.to_string(),
                        j.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        error_line(j.error.as_deref()),
                    ]
                },
            )?;
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Show {
            id,
            output,
            rejected,
        } => {
            let id = job_id(&pool, id).await?;
            let Some(j) = jobs::get(&pool, id).await? else {
                bail!("job {id} does not exist");
            };
            let Some(limit) = rejected else {
                print_one(&j, *output)?;
                return Ok(ExitCode::SUCCESS);
            };
            let (rows, total) = crate::import::job::kept_rejects(&pool, &j, *limit).await?;
            let mut v = serde_json::to_value(&j)?;
            v["rejected_rows"] = serde_json::json!({ "total": total, "rows": rows });
            print_one(&v, *output)?;
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Retry {
            id: None,
            reason,
            output,
            project,
            table,
            since,
            until,
            ..
        } => {
            let who = cli_actor();
            let by = crate::store::queue::Actor {
                who: &who,
                reason: reason.as_deref(),
                audit: None,
            };
            let filter = crate::store::queue::FailedFilter {
                project: project.clone(),
                table: table.clone(),
                since: *since,
                until: *until,
            };
            let results = crate::controls::retry_failed(&pool, &filter, &by).await?;
            let rows: Vec<serde_json::Value> = results
                .iter()
                .map(|(id, r)| match r {
                    Ok(r) => {
                        serde_json::json!({"id": id, "file_name": r.job.file_name, "retried": true})
                    }
                    Err(e) => serde_json::json!({
                        "id": id, "retried": false,
                        "error": secret::scrub_known(&e.to_string()),
                    }),
                })
                .collect();
            print_list(&rows, *output, &["JOB", "FILE", "RETRIED"], |v| {
                vec![
                    v["id"].as_str().unwrap_or("-").to_string(),
                    v["file_name"].as_str().unwrap_or("-").to_string(),
                    match v["error"].as_str() {
                        Some(e) => format!("no: {e}"),
                        None => "queued for the daemon".into(),
                    },
                ]
            })?;
            let refused = rows.iter().filter(|v| v["retried"] == false).count();
            Ok(if refused == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        JobsCommand::Retry {
            id: Some(id),
            force,
            reason,
            output,
            ..
        } => {
            let id = &job_id(&pool, id).await?;
            let who = cli_actor();
            let by = crate::store::queue::Actor {
                who: &who,
                reason: reason.as_deref(),
                audit: None,
            };
            let retried = crate::controls::retry(&pool, *id, *force, &by).await?;
            run_again(&pool, retried, *output).await
        }
        JobsCommand::Cancel { id, reason, output } => {
            let id = job_id(&pool, id).await?;
            let who = cli_actor();
            let by = crate::store::queue::Actor {
                who: &who,
                reason: reason.as_deref(),
                audit: None,
            };
            let cancel = crate::controls::cancel(&pool, id, &by).await?;
            // A running job's worker stops it at its next lease renewal.
            let mut job = cancel.job.clone();
            let waited = std::time::Instant::now();
            while matches!(job.status, JobStatus::Queued | JobStatus::Running)
                && waited.elapsed() < std::time::Duration::from_secs(120)
            {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                job = jobs::get(&pool, id).await?.unwrap_or(job);
            }
            if output.structured() {
                print_one(&job, *output)?;
            } else {
                println!(
                    "job {id} is {}: {}",
                    job.status,
                    secret::scrub_known(job.error.as_deref().unwrap_or("-"))
                );
                if let Some(to) = &cancel.moved {
                    println!("  moved to {}", to.display());
                }
            }
            Ok(if job.status == JobStatus::Failed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        JobsCommand::Replay { id, reason, output } => {
            let id = job_id(&pool, id).await?;
            let who = cli_actor();
            let by = crate::store::queue::Actor {
                who: &who,
                reason: Some(reason),
                audit: None,
            };
            let replay = crate::controls::replay(&pool, id, &by).await?;
            if !output.structured() {
                println!("job {id} replayed as job {}", replay.job.id);
            }
            run_again(&pool, replay, *output).await
        }
    }
}

/// Runs a job that [`crate::controls`] queued (a retry or a replay) here
/// in the foreground, and finishes its file as a daemon worker would: the
/// top-level `processed/` or `failed/` of its inbox.
async fn run_again(
    pool: &sqlx::PgPool,
    queued: crate::controls::Retried,
    output: Output,
) -> Result<ExitCode> {
    let (id, job) = (queued.job.id, &queued.job);
    let worker = worker();
    let path = PathBuf::from(&job.file_path);
    let result = run_with_progress(pool, Foreground::Existing(id), &worker, &path).await;
    let mut outcomes = Vec::new();
    let ok = report(&job.file_path, id, &result, output, &mut outcomes);
    match crate::controls::set_aside(pool, id, queued.returned).await {
        Ok(Some(to)) if !output.structured() => println!("  moved to {}", to.display()),
        Ok(_) => {}
        Err(e) => eprintln!("warning: {e}"),
    }
    if output.structured() {
        print_value(&outcomes, output)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The one job whose id starts with `prefix`.
async fn job_id(pool: &sqlx::PgPool, prefix: &IdPrefix) -> Result<uuid::Uuid> {
    let found = jobs::ids_with_prefix(pool, prefix).await?;
    Ok(crate::id_prefix::resolved(prefix, "job", &found)?)
}

/// The first line of a job's error, as `cpi jobs list` shows it (the
/// whole error is in `cpi jobs show`); `-` for none.
fn error_line(error: Option<&str>) -> String {
    const MAX: usize = 120;
    let Some(line) = error
        .and_then(|e| e.lines().next())
        .filter(|l| !l.is_empty())
    else {
        return "-".into();
    };
    match line.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

/// A job's status as `cpi jobs list` shows it: a queued job that waits for
/// its retry says so, and until when.
fn status_text(j: &jobs::Job) -> String {
    match (j.status, j.waits_for_fix, j.not_before) {
        (JobStatus::Queued, true, _) => "queued (waits for a fix)".into(),
        (JobStatus::Queued, false, Some(t)) if t > chrono::Utc::now() => {
            format!("queued (retry at {})", t.format("%H:%M:%S"))
        }
        (s, _, _) => s.to_string(),
    }
}
