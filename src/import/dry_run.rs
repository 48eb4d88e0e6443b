//! `cpi check` and `POST /projects/{name}/check`: a file through
//! everything an import does (dialect, mapping, types, `infer` of a missing
//! table, row errors, checks, the merge) in one transaction that is always
//! rolled back. Nothing is written to the target, its ledger, its rejects
//! table or the job history: there is no job.

use std::path::Path;

use serde::Serialize;
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use crate::config::checks::Outcome;
use crate::config::Mode;
use crate::import::checks::CheckResult;
use crate::import::context::Ctx;
use crate::import::error::ImportError;
use crate::import::pipeline::RowError;
use crate::import::{load, options, reader, target};
use crate::secret::{self, Secret};
use crate::store::jobs::{Counts, JobStatus};
use crate::store::{parse_config, ParsedConfig};

/// The project a file is checked against: its config and its target.
pub struct Target {
    project: String,
    config: serde_json::Value,
    parsed: ParsedConfig,
    url: Secret,
}

impl Target {
    /// The project as applied in the management database.
    pub async fn applied(mgmt: &PgPool, project: &str) -> Result<Target, ImportError> {
        let (row, url) = super::ready::project_target(mgmt, project).await?;
        Ok(Target {
            project: row.name,
            config: row.config,
            parsed: row.parsed,
            url,
        })
    }

    /// The same project checked against another database (a staging copy,
    /// a scratch database in CI).
    pub fn with_url(self, url: Secret) -> Target {
        secret::register(&url);
        Target { url, ..self }
    }

    /// A project as a manifests folder describes it (a pull request's
    /// config, before it is applied).
    pub fn described(project: &str, config: serde_json::Value, url: Secret) -> Target {
        secret::register(&url);
        Target {
            project: project.to_string(),
            parsed: parse_config(&config),
            config,
            url,
        }
    }
}

/// What an import of the file would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// It would load, with nothing to look at.
    Load,
    /// It would load, with warnings: a check warned, or rows would be skipped.
    LoadWithWarnings,
    /// It would fail: a row error, a check of severity `error`, the merge.
    Fail,
    /// Its content is in the ledger already: nothing would load.
    Duplicate,
}

impl Verdict {
    /// `cpi check`'s exit code: 0 would load (or is loaded already), 2 with
    /// warnings, 3 would fail. (1 is cpi's own error.)
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Load | Verdict::Duplicate => 0,
            Verdict::LoadWithWarnings => 2,
            Verdict::Fail => 3,
        }
    }
}

/// The verdict of a load that reached one (pure).
pub fn verdict(status: JobStatus, counts: &Counts, checks: &[CheckResult]) -> Verdict {
    match status {
        JobStatus::Duplicate => Verdict::Duplicate,
        JobStatus::Succeeded
            if counts.rows_rejected > 0 || checks.iter().any(|c| c.outcome == Outcome::Warn) =>
        {
            Verdict::LoadWithWarnings
        }
        JobStatus::Succeeded => Verdict::Load,
        _ => Verdict::Fail,
    }
}

/// The dry run's report on one file.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// The file's name.
    pub file: String,
    /// What an import would do.
    pub verdict: Verdict,
    /// The target table.
    pub target_table: String,
    /// The import mode.
    #[schema(value_type = String)]
    pub mode: Mode,
    /// The rows it would read, insert, update, delete and skip.
    #[serde(flatten)]
    pub counts: Counts,
    /// Why it would fail; else the decisions and warnings an import would note.
    pub message: Option<String>,
    /// Row errors: the rows that would be skipped, or the row that fails the file.
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<RowError>,
    /// How many row errors in all.
    pub errors_total: u64,
    /// Every check's verdict.
    pub checks: Vec<CheckResult>,
    /// The `CREATE TABLE` an import would run (the table is missing).
    pub create_table: Option<String>,
}

/// Checks the file at `path`, named `name` (as the project's file patterns
/// see it): see the module documentation.
pub async fn check_file(target: &Target, path: &Path, name: &str) -> Result<Report, ImportError> {
    let project = target.project.as_str();
    let opts = options::resolve_options(project, &target.config, &target.parsed, path, name)?;
    let unreadable = |source: std::io::Error| ImportError::FileUnreadable {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    // Hashed first, so that a file already imported says so.
    let source = reader::Source::File(path.to_path_buf());
    let hash_source = source.clone();
    let (sha256, _) = tokio::task::spawn_blocking(move || reader::hash(&hash_source))
        .await
        .map_err(|e| unreadable(std::io::Error::other(e)))?
        .map_err(unreadable)?;
    let ctx = Ctx {
        job_id: Uuid::nil(),
        project: project.to_string(),
        source,
        file: name.to_string(),
        sha256: Some(sha256),
        size: meta.len(),
        modified: meta.modified().ok(),
        opts,
        replay: false,
        dry_run: true,
    };
    let mut conn = target::connect(&target.url, project).await?;
    let result = load::load(&mut conn, &ctx, None, load::Within::Own).await;
    let _ = conn.close().await;
    let mut report = Report {
        file: name.to_string(),
        verdict: Verdict::Fail,
        target_table: ctx.opts.table.to_string(),
        mode: ctx.opts.mode,
        counts: Counts::default(),
        message: None,
        errors: Vec::new(),
        errors_total: 0,
        checks: Vec::new(),
        create_table: None,
    };
    let scrub = |m: &str| secret::scrub(m, &[&target.url]);
    match result {
        Ok(l) => {
            report.verdict = verdict(l.status, &l.counts, &l.checks);
            report.counts = l.counts;
            report.message = l.note.as_deref().map(scrub);
            report.errors = l.errors;
            report.errors_total = l.errors_total;
            report.checks = l.checks;
            report.create_table = l.created;
        }
        Err(f) => {
            let r = f.refused(&path.display().to_string(), project)?;
            report.message = Some(scrub(&r.message));
            report.errors = r.errors;
            report.errors_total = r.errors_total;
            report.counts = r.counts;
            report.checks = r.checks;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::checks::Severity;

    fn check(outcome: Outcome) -> CheckResult {
        CheckResult {
            check: "c".into(),
            severity: Severity::Error,
            outcome,
            failing: 0,
            rows: 1,
            message: String::new(),
            samples: Vec::new(),
        }
    }

    #[test]
    fn a_verdict_and_its_exit_code_follow_the_load() {
        let clean = Counts::default();
        let skipped = Counts {
            rows_rejected: 1,
            ..Counts::default()
        };
        let rows = [
            (
                JobStatus::Succeeded,
                &clean,
                vec![check(Outcome::Pass)],
                Verdict::Load,
                0,
            ),
            (
                JobStatus::Succeeded,
                &clean,
                vec![check(Outcome::Warn)],
                Verdict::LoadWithWarnings,
                2,
            ),
            (
                JobStatus::Succeeded,
                &skipped,
                vec![],
                Verdict::LoadWithWarnings,
                2,
            ),
            (JobStatus::Duplicate, &clean, vec![], Verdict::Duplicate, 0),
            (
                JobStatus::Failed,
                &clean,
                vec![check(Outcome::Error)],
                Verdict::Fail,
                3,
            ),
        ];
        for (status, counts, checks, want, code) in rows {
            let got = verdict(status, counts, &checks);
            assert_eq!(got, want, "{status:?} {checks:?}");
            assert_eq!(got.exit_code(), code);
        }
    }
}
