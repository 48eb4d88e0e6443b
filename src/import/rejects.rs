//! `rejects: table` (issue 27): every row `on_error: skip_rows` skipped is
//! written to `cpi.rejected_rows` in the target (file, job, line, the row's
//! text, the error), in the import's transaction, so that it is queryable
//! with SQL and nothing the file held is lost. The table is created the
//! way the ledger `cpi.imported_files` is.

use sqlx::PgConnection;
use uuid::Uuid;

/// The statements that create `cpi.rejected_rows`.
pub const CREATE_REJECTS: &[&str] = &[
    "CREATE SCHEMA IF NOT EXISTS cpi",
    "CREATE TABLE IF NOT EXISTS cpi.rejected_rows (
    id BIGSERIAL PRIMARY KEY,
    project TEXT NOT NULL,
    target_table TEXT NOT NULL,
    file_name TEXT NOT NULL,
    job_id UUID NOT NULL,
    line BIGINT NOT NULL,
    raw TEXT NOT NULL,
    error TEXT NOT NULL,
    rejected_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW()
)",
    "CREATE INDEX IF NOT EXISTS rejected_rows_job ON cpi.rejected_rows (job_id)",
];

/// One skipped row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The file line it starts on.
    pub line: u64,
    /// Its fields, written again as CSV with the file's delimiter and quote.
    pub raw: String,
    /// Why it was skipped (the first error).
    pub error: String,
}

/// The record's fields as one CSV line: joined by `delimiter`, a field
/// quoted (its quotes doubled) when it holds the delimiter's first byte,
/// the quote or a line break. Invalid UTF-8 is replaced.
pub fn raw_text<'a>(fields: impl Iterator<Item = &'a [u8]>, delimiter: &[u8], quote: u8) -> String {
    let d0 = delimiter.first().copied().unwrap_or(b',');
    let q = char::from(quote).to_string();
    fields
        .map(|f| {
            let t = String::from_utf8_lossy(f);
            if f.iter()
                .any(|b| *b == d0 || *b == quote || *b == b'\n' || *b == b'\r')
            {
                format!("{q}{}{q}", t.replace(&q, &format!("{q}{q}")))
            } else {
                t.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(&String::from_utf8_lossy(delimiter))
}

/// Creates `cpi.rejected_rows` if needed, as the ledger is.
pub async fn ensure(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    super::target::ensure_table(conn, "cpi.rejected_rows", "cpi rejects", CREATE_REJECTS).await
}

/// Where the rows were skipped.
pub struct Origin<'a> {
    /// The project.
    pub project: &'a str,
    /// The target table, quoted.
    pub table: &'a str,
    /// The file's name.
    pub file: &'a str,
    /// The job.
    pub job_id: Uuid,
}

/// Writes the rows (one statement), on the import's transaction.
pub async fn insert(
    tx: &mut PgConnection,
    at: &Origin<'_>,
    rows: &[Rejected],
) -> Result<(), sqlx::Error> {
    let lines: Vec<i64> = rows.iter().map(|r| r.line as i64).collect();
    let raws: Vec<&str> = rows.iter().map(|r| r.raw.as_str()).collect();
    let errors: Vec<&str> = rows.iter().map(|r| r.error.as_str()).collect();
    sqlx::query(
        "INSERT INTO cpi.rejected_rows (project, target_table, file_name, job_id, line, raw, error)
         SELECT $1, $2, $3, $4, l, r, e FROM unnest($5::bigint[], $6::text[], $7::text[]) AS u(l, r, e)",
    )
    .bind(at.project)
    .bind(at.table)
    .bind(at.file)
    .bind(at.job_id)
    .bind(lines)
    .bind(raws)
    .bind(errors)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A row kept in `cpi.rejected_rows`, as `cpi jobs show --rejected` lists it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct KeptRow {
    /// The file line it starts on.
    pub line: i64,
    /// Its text, as CSV.
    pub raw: String,
    /// Why it was skipped.
    pub error: String,
}

/// The first `limit` rows job `job_id` kept, by line (none when the target
/// has no `cpi.rejected_rows`), and how many it kept in all.
pub async fn of_job(
    conn: &mut PgConnection,
    job_id: Uuid,
    limit: i64,
) -> Result<(Vec<KeptRow>, i64), sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('cpi.rejected_rows') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok((Vec::new(), 0));
    }
    let rows = sqlx::query_as(
        "SELECT line, raw, error FROM cpi.rejected_rows WHERE job_id = $1 ORDER BY line LIMIT $2",
    )
    .bind(job_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM cpi.rejected_rows WHERE job_id = $1")
        .bind(job_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok((rows, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_rows_are_written_back_as_csv() {
        let f: Vec<&[u8]> = vec![b"1", b"a, b", b"say \"hi\"", b"x"];
        assert_eq!(
            raw_text(f.iter().copied(), b",", b'"'),
            "1,\"a, b\",\"say \"\"hi\"\"\",x"
        );
        assert_eq!(
            raw_text(f.iter().copied(), b"; ", b'\''),
            "1; a, b; say \"hi\"; x"
        );
    }
}
