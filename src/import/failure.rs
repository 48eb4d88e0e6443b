//! Why a load did not commit, and which server errors are worth a retry.

use sqlx::postgres::PgDatabaseError;

use crate::import::pipeline::{self, RowError};
use crate::store::jobs::Counts;

/// Why a load did not commit.
pub(super) enum Failure {
    /// The file (or its fit with the table) is wrong: it goes to failed/.
    Bad {
        message: String,
        errors: Vec<RowError>,
        errors_total: u64,
        counts: Counts,
    },
    /// A check of severity `error` stopped the file: every check's verdict.
    Checks {
        message: String,
        results: Vec<crate::import::checks::CheckResult>,
        counts: Counts,
    },
    /// The target misbehaved (connection lost, serialization failure…).
    Transient(sqlx::Error),
    /// The file changed while it was loaded (the message says how): all
    /// rolled back, and tried again later, as a producer is still writing.
    Changed(String),
    /// Not a verdict: a [`Within::Shared`](super::load::Within::Shared)
    /// load reached a step that needs a savepoint of its own (a second
    /// COPY, a failed merge), so the batch loads again with a savepoint per
    /// file. The second pass replaces every result of the first.
    NeedsSavepoint(String),
}

/// A load the file's content stopped, as its job or its report records it.
pub(super) struct Refused {
    pub message: String,
    pub errors: Vec<RowError>,
    pub errors_total: u64,
    pub counts: Counts,
    pub checks: Vec<crate::import::checks::CheckResult>,
}

impl Failure {
    /// The verdict on the file (`Bad`, `Checks`), or why none was reached
    /// (`Changed`, `Transient`) as the error of the file at `path` of `project`.
    pub(super) fn refused(
        self,
        path: &str,
        project: &str,
    ) -> Result<Refused, crate::import::error::ImportError> {
        use crate::import::error::ImportError;
        match self {
            Failure::Bad {
                message,
                errors,
                errors_total,
                counts,
            } => Ok(Refused {
                message,
                errors,
                errors_total,
                counts,
                checks: Vec::new(),
            }),
            Failure::Checks {
                message,
                results,
                counts,
            } => Ok(Refused {
                message,
                errors: Vec::new(),
                errors_total: 0,
                counts,
                checks: results,
            }),
            Failure::Changed(message) => Err(ImportError::FileChanged {
                path: path.to_string(),
                message,
            }),
            Failure::Transient(source) => Err(ImportError::TargetTransient {
                project: project.to_string(),
                source,
            }),
            // The batch never concludes a first-pass result; should one
            // come here, the job is tried again, as after a lost connection.
            Failure::NeedsSavepoint(why) => Err(ImportError::TargetTransient {
                project: project.to_string(),
                source: sqlx::Error::Protocol(why),
            }),
        }
    }
}

impl Failure {
    pub(super) fn bad(message: impl Into<String>) -> Failure {
        Failure::Bad {
            message: message.into(),
            errors: Vec::new(),
            errors_total: 0,
            counts: Counts::default(),
        }
    }

    /// The file was rejected after parsing: the parser's report goes with
    /// it, and nothing counts as written.
    pub(super) fn rejected(message: String, s: &pipeline::Summary) -> Failure {
        Failure::Bad {
            message,
            errors: s.errors.clone(),
            errors_total: s.errors_total,
            counts: Counts {
                rows_read: s.rows_read,
                rows_rejected: s.rows_rejected,
                ..Counts::default()
            },
        }
    }

    /// The file's compressed stream is broken (`message` says how): the
    /// only error, since the rows decoded from it are not the file's rows
    /// (a truncated `.gz` ends in half a line, a corrupt one in garbage).
    pub(super) fn broken_stream(message: String, s: &pipeline::Summary) -> Failure {
        Failure::Bad {
            message,
            errors: Vec::new(),
            errors_total: 0,
            counts: Counts {
                rows_read: s.rows_read,
                ..Counts::default()
            },
        }
    }

    /// Attaches the parser's report to a bad failure.
    pub(super) fn with_report(self, s: &pipeline::Summary) -> Failure {
        match self {
            Failure::Bad { message, .. } => Failure::rejected(message, s),
            other => other,
        }
    }
}

/// SQLSTATE classes worth a retry: connection exception, transaction
/// rollback (serialization, deadlock), insufficient resources, operator
/// intervention, system error; and a lock timeout (55P03).
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c == "55P03"
                || ["08", "40", "53", "57", "58"]
                    .iter()
                    .any(|p| c.starts_with(p))
        }),
        _ => false,
    }
}

/// A server error as the operator should read it: with the file line when
/// the server names a COPY row, and the detail (e.g. the duplicate key).
pub(super) fn db_failure(file: &str, e: sqlx::Error, lines: Option<&pipeline::LineMap>) -> Failure {
    if is_transient(&e) {
        return Failure::Transient(e);
    }
    let Some(pg) = e
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<PgDatabaseError>())
    else {
        return Failure::bad(format!("{file}: {e}"));
    };
    let mut msg = pg.message().to_string();
    if let Some(d) = pg.detail() {
        msg.push_str(&format!(" ({d})"));
    }
    let line = pg
        .r#where()
        .and_then(copy_row_of)
        .and_then(|row| lines.and_then(|l| l.line_of(row)));
    let column = pg
        .r#where()
        .and_then(copy_column_of)
        .map(|c| format!("column {}: ", crate::config::quote_ident(&c)))
        .unwrap_or_default();
    Failure::bad(match line {
        Some(l) => format!("{file}:{l}: {column}{msg}"),
        None => format!("{file}: {msg}"),
    })
}

/// `COPY t, line 1532, column amount: "x"` → 1532.
pub fn copy_row_of(context: &str) -> Option<u64> {
    let i = context.find("line ")?;
    let digits: String = context[i + 5..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// `COPY t, line 3, column date: "x"` → `date` (the server's context
/// names the column of a refused value).
pub fn copy_column_of(context: &str) -> Option<String> {
    let first = context.lines().next()?;
    let i = first.find(", column ")?;
    let rest = &first[i + 9..];
    let end = rest.find(": ").unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_context_row() {
        assert_eq!(
            copy_row_of("COPY t, line 1532, column amount: \"x\""),
            Some(1532)
        );
        assert_eq!(copy_row_of("COPY t, line 7"), Some(7));
        assert_eq!(copy_row_of("SQL statement"), None);
        assert_eq!(
            copy_column_of("COPY t, line 3, column date: \"x\"").as_deref(),
            Some("date")
        );
        assert_eq!(copy_column_of("COPY t, line 7"), None);
    }
}
