//! `/reconcile/runs`: the recorded reconciles (`cpi_reconcile_runs`), read-only.
//!
//! Open without a token, like `/jobs`: a run's diff is rendered with its
//! secrets redacted when it is recorded, and scrubbed again here; without
//! the token its `database_url` lines are hidden whole, since even a
//! redacted URL names hosts and users.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::docs::{Addressed, IdErrors, IdParam, WindowErrors};
use super::error::ApiError;
use super::extract::{newest_first_window, IdPath, QueryParams};
use super::state::AppState;
use crate::secret;
use crate::store::{self, ReconcileStatus, RunFilter};

pub use crate::store::ReconcileRun;

const KIND: &str = "reconcile run";

impl Addressed for ReconcileRun {
    const ID: &'static str = "Run id";
    // Not KIND: the routes say "run", messages "reconcile run".
    const NOUN: &'static str = "run";
}

/// One run with its diff.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconcileRunDetail {
    #[serde(flatten)]
    pub run: ReconcileRun,
    /// The plan it applied as a unified diff, secrets redacted.
    pub diff: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// Only runs that ended so.
    #[param(inline)]
    pub status: Option<ReconcileStatus>,
    /// At most this many runs (default 50, at most 500).
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<u32>,
    #[param(minimum = 0, maximum = 2147483647)]
    pub offset: Option<u32>,
}

/// A page of reconcile runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunPage {
    pub runs: Vec<ReconcileRun>,
    /// Runs matching the filter, across all pages.
    pub total: i64,
    /// Drift corrections of the succeeded runs matching the filter, across all pages.
    pub drifted_total: i64,
    pub limit: u32,
    pub offset: u32,
}

fn scrubbed(mut run: ReconcileRun) -> ReconcileRun {
    run.error = run.error.map(|e| secret::scrub_credentials(&e));
    run
}

#[utoipa::path(
    get, path = "/reconcile/runs", operation_id = "list_reconcile_runs", tag = "reconcile",
    params(RunsQuery),
    responses(
        (status = 200, description = "A page of reconcile runs, newest first", body = RunPage, links(
            ("GetFirstRun" = (operation_id = "get_reconcile_run", parameters(("id" = "$response.body#/runs/0/id")))),
        )),
        WindowErrors,
    )
)]
pub async fn list(
    auth: super::auth::Authorization,
    State(state): State<AppState>,
    QueryParams(q): QueryParams<RunsQuery>,
) -> Result<Json<RunPage>, ApiError> {
    let (limit, offset) = newest_first_window(q.limit, q.offset)?;
    // A run applies every project's manifests at once (its counts and its
    // error name any of them): only a caller who reads every project sees
    // runs; one bound to some projects gets an empty page.
    if !auth.reads_everything() {
        return Ok(Json(RunPage {
            runs: Vec::new(),
            total: 0,
            drifted_total: 0,
            limit,
            offset,
        }));
    }
    let filter = RunFilter {
        status: q.status,
        limit: i64::from(limit),
        offset: i64::from(offset),
    };
    let page = store::run_page(&state.pool, &filter).await?;
    Ok(Json(RunPage {
        runs: page.runs.into_iter().map(scrubbed).collect(),
        total: page.total,
        drifted_total: page.drifted_total,
        limit,
        offset,
    }))
}

#[utoipa::path(
    get, path = "/reconcile/runs/{id}", operation_id = "get_reconcile_run", tag = "reconcile",
    params(IdParam<ReconcileRun>),
    responses(
        (status = 200, description = "The run with its redacted diff", body = ReconcileRunDetail),
        IdErrors<ReconcileRun>,
    )
)]
pub async fn get(
    auth: super::auth::Authorization,
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<ReconcileRunDetail>, ApiError> {
    let (run, diff) = store::run_by_id(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound { kind: KIND, id })?;
    let diff = secret::scrub_credentials(&diff);
    // A run spans every project: its URLs need read_secrets on all of them.
    let everything = crate::access::Target::Everything;
    let sees = auth
        .0
        .as_ref()
        .is_some_and(|c| c.may(crate::access::Permission::ReadSecrets, &everything));
    let diff = if sees { diff } else { hide_urls(&diff) };
    Ok(Json(ReconcileRunDetail {
        run: scrubbed(run),
        diff,
    }))
}

const HIDDEN: &str = "(hidden: shown with the API token)";

/// The diff with the value of every `database_url` line replaced.
fn hide_urls(diff: &str) -> String {
    diff.split_inclusive('\n')
        .map(|line| {
            let body = line.trim_start_matches([' ', '+', '-']);
            match body.strip_prefix("database_url:") {
                Some(_) => {
                    let sign = &line[..line.len() - body.len()];
                    let nl = if line.ends_with('\n') { "\n" } else { "" };
                    format!("{sign}database_url: {HIDDEN}{nl}")
                }
                None => line.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_lines_are_hidden_whole() {
        let diff = "~ connection w (update: database_url)\n-database_url: postgresql://u:*****@h/db\n+database_url: postgresql://u:*****@h2/db  # (secret changed)\n description: x\n database_url: postgres://a@b/c";
        let hidden = hide_urls(diff);
        assert!(!hidden.contains("://"), "{hidden}");
        assert_eq!(hidden.lines().count(), 5);
        assert!(hidden.contains(&format!("-database_url: {HIDDEN}\n")));
        assert!(hidden.contains(&format!("+database_url: {HIDDEN}\n")));
        assert!(hidden.ends_with(&format!(" database_url: {HIDDEN}")));
        assert!(hidden.starts_with("~ connection w (update: database_url)\n"));
        assert!(hidden.contains(" description: x\n"));
    }
}
