//! The checks at the import's edge: run on the staged rows in the
//! import's transaction, after the COPY and before the merge, so a file
//! that breaks its contract never becomes visible.

use sqlx::PgConnection;

use crate::config::checks::{Check, Outcome};
use crate::import::checks::{self, CheckResult, SampleRow};
use crate::import::copy::STAGE;
use crate::import::pipeline::LineMap;

/// A check the server could not run (an expression naming a column the
/// file lacks, a bad regular expression): the check's name and why.
pub(super) struct CheckBroken {
    pub check: String,
    pub error: sqlx::Error,
}

/// A check statement's answer: failing count, sample row numbers, sample rows as JSON.
type Answer = (i64, Option<Vec<i64>>, Option<Vec<String>>);

/// Runs every check on the `rows` staged rows; each in its own savepoint,
/// so a broken one is reported by name.
pub(super) async fn run_checks(
    tx: &mut PgConnection,
    file: &str,
    target: &str,
    list: &[Check],
    rows: u64,
    lines: &LineMap,
) -> Result<Vec<CheckResult>, CheckBroken> {
    let mut out = Vec::with_capacity(list.len());
    for check in list {
        let (failing, samples) = match checks::check_sql(check, STAGE, target) {
            None => (checks::row_count_failing(check, rows), Vec::new()),
            Some(q) => {
                let broken = |error| CheckBroken {
                    check: check.name.clone(),
                    error,
                };
                // Read-only for the check's statement: whatever function an
                // expression calls, it cannot write. Rolling back to the
                // savepoint ends the read-only mode for the merge.
                for step in [
                    "SAVEPOINT cpi_check",
                    "SET LOCAL transaction_read_only = on",
                ] {
                    sqlx::query(step).execute(&mut *tx).await.map_err(broken)?;
                }
                // Built from quoted identifiers, quoted literals and an
                // expression `expression_problem` let through.
                let r: Result<Answer, _> = sqlx::query_as(sqlx::AssertSqlSafe(q))
                    .persistent(false)
                    .fetch_one(&mut *tx)
                    .await;
                let (n, rs, vals) = r.map_err(broken)?;
                for step in [
                    "ROLLBACK TO SAVEPOINT cpi_check",
                    "RELEASE SAVEPOINT cpi_check",
                ] {
                    sqlx::query(step).execute(&mut *tx).await.map_err(broken)?;
                }
                let samples = rs
                    .unwrap_or_default()
                    .into_iter()
                    .zip(vals.unwrap_or_default())
                    .map(|(r, v)| SampleRow {
                        line: lines.line_of(r as u64),
                        row: serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v)),
                    })
                    .collect();
                (n as u64, samples)
            }
        };
        let outcome = check.decide(failing, rows);
        let shown: Vec<u64> = samples.iter().filter_map(|s: &SampleRow| s.line).collect();
        out.push(CheckResult {
            check: check.name.clone(),
            severity: check.severity,
            outcome,
            failing,
            rows,
            message: checks::message(file, check, failing, rows, &shown),
            samples: if outcome == Outcome::Pass {
                Vec::new()
            } else {
                samples
            },
        });
    }
    Ok(out)
}
