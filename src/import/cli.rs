//! `cpi import` and `cpi jobs`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::cli::{management_pool, table, Global, Output};
use crate::import::{self, ImportError, JobOutcome, Progress};
use crate::jobs::{self, JobStatus, ListFilter};
use crate::secret;
use crate::store;

/// How many row errors a line of `cpi import` output shows (all are in the job).
const SHOWN_ERRORS: usize = 10;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The project whose options and connection apply.
    #[arg(long)]
    pub project: String,
    /// CSV files (`.csv.gz` read through gzip).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List import jobs, newest first.
    List {
        #[arg(long)]
        project: Option<String>,
        /// queued, running, succeeded, failed or duplicate.
        #[arg(long, value_parser = parse_status)]
        status: Option<JobStatus>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Show one job with every error.
    Show {
        id: Uuid,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Run a failed job's file again (when it still exists).
    Retry {
        id: Uuid,
        /// Also take over a job stuck in `running` (its worker died). Safe
        /// even if it did not: the target's ledger keeps the import single.
        #[arg(long)]
        force: bool,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

fn parse_status(s: &str) -> Result<JobStatus, String> {
    JobStatus::parse(s)
        .ok_or_else(|| format!("{s:?} is not one of queued, running, succeeded, failed, duplicate"))
}

fn worker() -> String {
    format!("cli:{}", std::process::id())
}

pub async fn import(g: &Global, a: &ImportArgs) -> Result<ExitCode> {
    for f in &a.files {
        if !f.is_file() {
            bail!("{} is not a file", f.display());
        }
    }
    let pool = management_pool(g).await?;
    store::migrate(&pool).await?;
    let worker = worker();
    let mut all_ok = true;
    let mut outcomes = Vec::new();
    for f in &a.files {
        let id = match jobs::create(&pool, &a.project, f, &worker).await {
            Ok(id) => id,
            Err(e) => return Err(active_job_hint(&pool, f, e).await),
        };
        let result = tokio::select! {
            r = run_with_progress(&pool, id, &worker, f) => r,
            signal = interrupted() => {
                // The import future is dropped with its target connection:
                // the server rolls the transaction back. The job says so,
                // and does not stay `running` to block the file.
                let message = format!("interrupted by {signal}: rolled back, nothing of the file was written");
                let _ = jobs::finish(&pool, id, JobStatus::Failed, &jobs::Counts::default(), Some(&message), None).await;
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
    if a.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Ctrl-C or SIGTERM, by name.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// A file may have only one queued or running job (the daemon's queue
/// relies on it): say which one, and what to do when its worker died.
async fn active_job_hint(
    pool: &sqlx::PgPool,
    file: &std::path::Path,
    e: jobs::JobError,
) -> anyhow::Error {
    let duplicate =
        matches!(&e, jobs::JobError::Db(sqlx::Error::Database(d)) if d.is_unique_violation());
    if duplicate {
        if let Ok(Some(j)) = jobs::active_for_path(pool, file).await {
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

/// A progress bar on stderr when it is a terminal; none when piped.
async fn run_with_progress(
    pool: &sqlx::PgPool,
    id: Uuid,
    worker: &str,
    file: &std::path::Path,
) -> Result<JobOutcome, ImportError> {
    if !std::io::stderr().is_terminal() {
        return import::run_job(pool, id, worker, None).await;
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
    let r = import::run_job(pool, id, worker, Some(&update)).await;
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
            if output == Output::Json {
                outcomes.push(serde_json::to_value(o).unwrap_or_default());
                return ok;
            }
            let c = &o.counts;
            println!(
                "{file}: {} into {} ({}): read {}, inserted {}, updated {}, deleted {}, rejected {} (job {})",
                o.status,
                o.target_table.as_deref().unwrap_or("-"),
                o.mode.as_deref().unwrap_or("-"),
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
            if output == Output::Json {
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

pub async fn jobs_cmd(g: &Global, cmd: &JobsCommand) -> Result<ExitCode> {
    let pool = management_pool(g).await?;
    store::migrate(&pool).await?;
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
                    limit: *limit,
                    offset: 0,
                },
            )
            .await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Text => {
                    let mut t = vec![[
                        "ID", "PROJECT", "FILE", "STATUS", "TABLE", "READ", "INSERTED", "UPDATED",
                        "DELETED", "REJECTED", "CREATED",
                    ]
                    .map(String::from)
                    .to_vec()];
                    t.extend(rows.iter().map(|j| {
                        vec![
                            j.id.to_string(),
                            j.project_name.clone(),
                            j.file_name.clone(),
                            j.status.to_string(),
                            j.target_table.clone().unwrap_or_else(|| "-".into()),
                            j.rows_read.to_string(),
                            j.rows_inserted.to_string(),
                            j.rows_updated.to_string(),
                            j.rows_deleted.to_string(),
                            j.rows_rejected.to_string(),
                            j.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        ]
                    }));
                    print!("{}", table(t));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Show { id, output } => {
            let Some(j) = jobs::get(&pool, *id).await? else {
                bail!("job {id} does not exist");
            };
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&j)?),
                Output::Text => print!("{}", serde_yaml::to_string(&j)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Retry { id, force, output } => {
            let job = jobs::requeue(&pool, *id, *force).await?;
            let worker = worker();
            let path = PathBuf::from(&job.file_path);
            let result = run_with_progress(&pool, *id, &worker, &path).await;
            let mut outcomes = Vec::new();
            let ok = report(&job.file_path, *id, &result, *output, &mut outcomes);
            if *output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&outcomes)?);
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
