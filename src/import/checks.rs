//! The SQL of a file's checks over its staged rows, and the report of
//! their verdicts. Pure: [`gate`](super::gate) runs it in the import's
//! transaction.
//!
//! Each check is one set-based statement over the staging table: one
//! pass, answering the failing count and the first rows (by file order)
//! that fail. `unique` with `scope: table` and `relationship` look rows up
//! in another table by an equality the target's index answers.

use serde::{Deserialize, Serialize};

use crate::config::checks::{Check, Outcome, Rule, Scope, Severity};
use crate::config::quote_ident;
use crate::import::sql::ROW_COLUMN;

/// Sample rows kept per failing check.
pub const SAMPLES: usize = 20;

/// A text as an SQL literal. `standard_conforming_strings` is on (the
/// default since PostgreSQL 9.1, and cpi refuses nothing else there), so
/// doubling the quote is the whole escape; NUL cannot reach the server.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\0', "").replace('\'', "''"))
}

fn cols(c: &[String], alias: &str) -> Vec<String> {
    c.iter()
        .map(|c| format!("{alias}.{}", quote_ident(c)))
        .collect()
}

/// The statement that answers `(failing int8, lines int8[], rows text[])`
/// for `check` over `stage` (rows numbered by [`ROW_COLUMN`]), whose
/// target is `target` (quoted). `None` for `row_count`, which is the
/// staged row count itself.
pub fn check_sql(check: &Check, stage: &str, target: &str) -> Option<String> {
    let r = quote_ident(ROW_COLUMN);
    let from = format!("{stage} s");
    let bad = match &check.rule {
        Rule::RowCount { .. } => return None,
        Rule::NotNull(c) => cols(c, "s")
            .iter()
            .map(|c| format!("{c} IS NULL"))
            .collect::<Vec<_>>()
            .join(" OR "),
        Rule::Unique { columns, scope } => {
            let not_null = cols(columns, "s")
                .iter()
                .map(|c| format!("{c} IS NOT NULL"))
                .collect::<Vec<_>>()
                .join(" AND ");
            let on = |other: &str| {
                columns
                    .iter()
                    .map(|c| format!("{other}.{q} = s.{q}", q = quote_ident(c)))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            };
            // The keys that are twice in the file, grouped on the key
            // columns alone (a hash of narrow rows): a window over the
            // staged rows sorted every whole row, most of a check's cost.
            let key = cols(columns, "s0").join(", ");
            let mut bad = format!(
                "{not_null} AND (({}) IN (SELECT {key} FROM {stage} s0 GROUP BY {key} HAVING count(*) > 1)",
                cols(columns, "s").join(", ")
            );
            if *scope == Scope::Table {
                bad.push_str(&format!(
                    " OR EXISTS (SELECT 1 FROM {target} t WHERE {})",
                    on("t")
                ));
            }
            bad.push(')');
            bad
        }
        Rule::AcceptedValues { column, values } => {
            let list = values
                .iter()
                .map(|v| quote_literal(v))
                .collect::<Vec<_>>()
                .join(", ");
            format!("s.{c}::text NOT IN ({list})", c = quote_ident(column))
        }
        Rule::Range { column, min, max } => {
            let c = format!("s.{}", quote_ident(column));
            // The literal is read as the column's type: numbers, dates, times alike.
            let mut parts = Vec::new();
            if let Some(m) = min {
                parts.push(format!("{c} < {}", quote_literal(m)));
            }
            if let Some(m) = max {
                parts.push(format!("{c} > {}", quote_literal(m)));
            }
            parts.join(" OR ")
        }
        Rule::Matches { column, pattern } => {
            format!(
                "s.{}::text !~ {}",
                quote_ident(column),
                quote_literal(pattern)
            )
        }
        Rule::MaxLength { column, max } => {
            format!("length(s.{}::text) > {max}", quote_ident(column))
        }
        Rule::Relationship {
            column,
            table,
            to_column,
        } => format!(
            "s.{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {t} o WHERE o.{oc} = s.{c})",
            c = quote_ident(column),
            t = table.quoted(),
            oc = quote_ident(to_column)
        ),
        // The expression has passed `expression_problem`: one boolean, no
        // statement; the server parses it here as part of a WHERE.
        Rule::Expression(e) => format!("NOT ({e})"),
    };
    Some(format!(
        "SELECT count(*)::int8, \
         (array_agg(s.{r} ORDER BY s.{r}))[1:{SAMPLES}], \
         (array_agg((to_jsonb(s) - '{ROW_COLUMN}')::text ORDER BY s.{r}))[1:{SAMPLES}] \
         FROM {from} WHERE {bad}"
    ))
}

/// One sample row of a failing check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SampleRow {
    /// The file line of the row.
    pub line: Option<u64>,
    /// The row's loaded values, as JSON.
    pub row: serde_json::Value,
}

/// One check's verdict on a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckResult {
    /// The check's name.
    pub check: String,
    /// Its severity.
    #[schema(value_type = String)]
    pub severity: Severity,
    /// What it decided.
    #[schema(value_type = String)]
    pub outcome: Outcome,
    /// Failing rows (for `row_count`: the file's row count when out of bounds, else 0).
    pub failing: u64,
    /// The file's rows.
    pub rows: u64,
    /// A sentence for the job and the report.
    pub message: String,
    /// Up to [`SAMPLES`] failing rows, by file order.
    pub samples: Vec<SampleRow>,
}

/// The verdict of a `row_count` check on `rows` rows: failing is 1 when out of bounds.
pub fn row_count_failing(check: &Check, rows: u64) -> u64 {
    match check.rule {
        Rule::RowCount { min, max } => {
            u64::from(min.is_some_and(|m| rows < m) || max.is_some_and(|m| rows > m))
        }
        _ => 0,
    }
}

/// The check's sentence for its verdict.
pub fn message(file: &str, check: &Check, failing: u64, rows: u64, lines: &[u64]) -> String {
    if let Rule::RowCount { min, max } = check.rule {
        let bounds = match (min, max) {
            (Some(a), Some(b)) => format!("{a} to {b}"),
            (Some(a), None) => format!("at least {a}"),
            (None, Some(b)) => format!("at most {b}"),
            (None, None) => "any".into(),
        };
        return format!(
            "{file}: check {}: {rows} row(s), expected {bounds}",
            check.name
        );
    }
    let shown: Vec<String> = lines.iter().take(5).map(u64::to_string).collect();
    let at = if shown.is_empty() {
        String::new()
    } else {
        format!(
            " (line {}{})",
            shown.join(", "),
            if failing as usize > shown.len() {
                ", …"
            } else {
                ""
            }
        )
    };
    format!(
        "{file}: check {}: {failing} of {rows} row(s) fail{at}",
        check.name
    )
}

/// The checks that stopped the file, by name, for the job's status.
pub fn failed_names(results: &[CheckResult], outcome: Outcome) -> Vec<&str> {
    results
        .iter()
        .filter(|r| r.outcome == outcome)
        .map(|r| r.check.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::checks::CheckSpec;

    fn check(yaml: &str) -> Check {
        serde_yaml::from_str::<CheckSpec>(yaml)
            .unwrap()
            .parse("t")
            .unwrap()
    }

    #[test]
    fn every_identifier_and_value_is_quoted() {
        let c = check(r#"{check: accepted_values, column: 'st"x', values: ["a'b", c]}"#);
        let q = check_sql(&c, "pg_temp.cpi_stage", "\"t\"").unwrap();
        assert!(q.contains(r#"s."st""x"::text NOT IN ('a''b', 'c')"#), "{q}");
        let c = check(r#"{check: relationship, column: c, to: 'x"y.id'}"#);
        let q = check_sql(&c, "pg_temp.cpi_stage", "\"t\"").unwrap();
        assert!(q.contains(r#"FROM "x""y" o WHERE o."id" = s."c""#), "{q}");
    }

    #[test]
    fn unique_at_table_scope_looks_the_key_up() {
        let c = check("{check: unique, columns: [a, b], scope: table}");
        let q = check_sql(&c, "st", "\"t\"").unwrap();
        assert!(
            q.contains(r#"(s."a", s."b") IN (SELECT s0."a", s0."b" FROM st s0 GROUP BY s0."a", s0."b" HAVING count(*) > 1)"#),
            "{q}"
        );
        assert!(
            q.contains(r#"EXISTS (SELECT 1 FROM "t" t WHERE t."a" = s."a" AND t."b" = s."b")"#),
            "{q}"
        );
        let file = check_sql(&check("{check: unique, columns: a}"), "st", "\"t\"").unwrap();
        assert!(!file.contains("EXISTS"), "{file}");
    }

    #[test]
    fn row_count_is_judged_here() {
        let c = check("{check: row_count, min: 2, max: 3}");
        assert_eq!(check_sql(&c, "st", "t"), None);
        assert_eq!(row_count_failing(&c, 1), 1);
        assert_eq!(row_count_failing(&c, 2), 0);
        assert_eq!(row_count_failing(&c, 4), 1);
        assert_eq!(
            message("f.csv", &c, 1, 4, &[]),
            "f.csv: check row_count: 4 row(s), expected 2 to 3"
        );
    }

    #[test]
    fn messages_name_count_and_lines() {
        let c = check("{check: not_null, columns: id}");
        assert_eq!(
            message("f.csv", &c, 7, 10, &[2, 3, 4, 5, 6, 7, 8]),
            "f.csv: check not_null(id): 7 of 10 row(s) fail (line 2, 3, 4, 5, 6, …)"
        );
        assert_eq!(quote_literal("it's\0"), "'it''s'");
    }
}
