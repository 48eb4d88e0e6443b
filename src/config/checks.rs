//! Data contracts: the checks a config writes (`checks:` in `defaults` and
//! per table), parsed into typed [`Check`]s with every problem named by
//! its key. Pure: the SQL they become is `import::checks`'.

pub use super::expression::expression_problem;
use serde::{Deserialize, Serialize};

use super::column_names::OneOrMany;
use super::table::TableName;

/// What a breached check does to its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Roll the import back; the file goes to `failed/`.
    Error,
    /// Commit; the warning is recorded on the job.
    Warn,
}

impl Severity {
    /// The word as a config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warn => "warn",
        }
    }
}

/// The kinds of check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// The file's row count within `min`/`max`.
    RowCount,
    /// No NULL in `columns`.
    NotNull,
    /// `columns` unique within the file (`scope: table`: and against the table).
    Unique,
    /// `column` one of `values` (NULL passes).
    AcceptedValues,
    /// `column` within `min`/`max` (NULL passes).
    Range,
    /// `column` matches the PostgreSQL regular expression `pattern` (NULL passes).
    Matches,
    /// `column`'s text at most `max` characters (NULL passes).
    MaxLength,
    /// `column`'s value present in `to` (`table.column` or `schema.table.column`; NULL passes).
    Relationship,
    /// The boolean SQL expression `sql` over the row is not false.
    Expression,
}

/// Where `unique` looks for duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Within the file (default).
    File,
    /// Within the file and against the table's rows (index-backed lookup).
    Table,
}

/// A bound of `range` or `row_count`: a number, or a text the column's type reads (a date).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Bound {
    /// A number.
    Number(f64),
    /// A value as text, read as the column's type.
    Text(String),
}

impl Bound {
    /// The bound as text.
    pub fn text(&self) -> String {
        match self {
            Bound::Number(n) => n.to_string(),
            Bound::Text(t) => t.clone(),
        }
    }
}

/// One check as a config writes it (`- check: unique` with its fields).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// The kind of check.
    pub check: CheckKind,
    /// A name for the report (default: the kind and its columns). Required by `expression`.
    pub name: Option<String>,
    /// The column (`accepted_values`, `range`, `matches`, `max_length`, `relationship`).
    pub column: Option<String>,
    /// The columns (`not_null`, `unique`).
    pub columns: Option<OneOrMany>,
    /// The accepted values (`accepted_values`).
    pub values: Option<Vec<String>>,
    /// Lower bound, inclusive (`range`, `row_count`).
    pub min: Option<Bound>,
    /// Upper bound, inclusive (`range`, `row_count`, `max_length`).
    pub max: Option<Bound>,
    /// A PostgreSQL regular expression (`matches`).
    pub pattern: Option<String>,
    /// `table.column` or `schema.table.column` (`relationship`).
    pub to: Option<String>,
    /// A boolean SQL expression over the row's columns (`expression`).
    pub sql: Option<String>,
    /// `file` (default) or `table` (`unique`).
    pub scope: Option<Scope>,
    /// `error` (default) or `warn`.
    pub severity: Option<Severity>,
    /// When a breach is an error: `> N` rows or `> N%` of the rows (default `> 0`).
    pub error_if: Option<String>,
    /// When a breach is a warning: `> N` rows or `> N%` of the rows (default `> 0`).
    pub warn_if: Option<String>,
}

/// A threshold: more than a count of failing rows, or more than a fraction of the rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// More than this many rows.
    Count(u64),
    /// More than this percentage of the file's rows.
    Percent(f64),
}

impl Threshold {
    /// Parses `> 0`, `>5`, `> 1%`, `> 0.5 %`.
    pub fn parse(s: &str) -> Option<Threshold> {
        let rest = s.trim().strip_prefix('>')?.trim();
        if let Some(p) = rest.strip_suffix('%') {
            let v: f64 = p.trim().parse().ok()?;
            return (v.is_finite() && (0.0..=100.0).contains(&v)).then_some(Threshold::Percent(v));
        }
        rest.parse().ok().map(Threshold::Count)
    }

    /// Whether `failing` rows of `total` pass the threshold.
    pub fn exceeded(self, failing: u64, total: u64) -> bool {
        match self {
            Threshold::Count(n) => failing > n,
            Threshold::Percent(p) => total > 0 && (failing as f64) * 100.0 / (total as f64) > p,
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Threshold::Count(n) => write!(f, "> {n}"),
            Threshold::Percent(p) => write!(f, "> {p}%"),
        }
    }
}

/// What one check tests, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Row count bounds.
    RowCount {
        /// At least.
        min: Option<u64>,
        /// At most.
        max: Option<u64>,
    },
    /// No NULL in these columns.
    NotNull(Vec<String>),
    /// The columns' values unique.
    Unique {
        /// The columns.
        columns: Vec<String>,
        /// Also against the table.
        scope: Scope,
    },
    /// One of the values.
    AcceptedValues {
        /// The column.
        column: String,
        /// Its accepted values.
        values: Vec<String>,
    },
    /// Within bounds.
    Range {
        /// The column.
        column: String,
        /// At least.
        min: Option<String>,
        /// At most.
        max: Option<String>,
    },
    /// Matches a regular expression.
    Matches {
        /// The column.
        column: String,
        /// The PostgreSQL regular expression.
        pattern: String,
    },
    /// At most so many characters.
    MaxLength {
        /// The column.
        column: String,
        /// The most characters.
        max: u64,
    },
    /// Present in another table's column.
    Relationship {
        /// The column.
        column: String,
        /// The other table.
        table: TableName,
        /// Its column.
        to_column: String,
    },
    /// A boolean expression over the row.
    Expression(String),
}

/// A check ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Its name in reports and events.
    pub name: String,
    /// What it tests.
    pub rule: Rule,
    /// What a breach does.
    pub severity: Severity,
    /// Breach as an error above this (severity `error` only).
    pub error_if: Threshold,
    /// Breach as a warning above this.
    pub warn_if: Threshold,
}

/// The verdict of one check on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Within its thresholds.
    Pass,
    /// Past `warn_if`: the file loads, the job carries the warning.
    Warn,
    /// Past `error_if` with severity `error`: the file is refused.
    Error,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Pass => "pass",
            Outcome::Warn => "warn",
            Outcome::Error => "error",
        })
    }
}

impl Check {
    /// dbt's rule: with severity `error`, past `error_if` is an error and
    /// else past `warn_if` a warning; with `warn`, only `warn_if` counts.
    pub fn decide(&self, failing: u64, total: u64) -> Outcome {
        if self.severity == Severity::Error && self.error_if.exceeded(failing, total) {
            Outcome::Error
        } else if self.warn_if.exceeded(failing, total) {
            Outcome::Warn
        } else {
            Outcome::Pass
        }
    }
}

fn threshold(v: &Option<String>, key: &str, at: &str, errors: &mut Vec<String>) -> Threshold {
    match v {
        None => Threshold::Count(0),
        Some(s) => Threshold::parse(s).unwrap_or_else(|| {
            errors.push(format!(
                "{at}.{key}: {s:?} is not a threshold (`> 0` rows or `> 1%` of the rows)"
            ));
            Threshold::Count(0)
        }),
    }
}

fn count_bound(b: &Option<Bound>, key: &str, at: &str, errors: &mut Vec<String>) -> Option<u64> {
    match b {
        None => None,
        Some(Bound::Number(n)) if *n >= 0.0 && n.fract() == 0.0 => Some(*n as u64),
        Some(b) => {
            errors.push(format!(
                "{at}.{key}: {:?} is not a whole number of rows",
                b.text()
            ));
            None
        }
    }
}

impl CheckSpec {
    /// The typed check, or every problem named under `at` (e.g. `tables.orders.checks[2]`).
    pub fn parse(&self, at: &str) -> Result<Check, Vec<String>> {
        let mut errors = Vec::new();
        let kind = serde_json::to_value(self.check)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        // Which of the optional fields this kind takes; any other is a mistake.
        let takes: &[&str] = match self.check {
            CheckKind::RowCount => &["min", "max"],
            CheckKind::NotNull => &["columns"],
            CheckKind::Unique => &["columns", "scope"],
            CheckKind::AcceptedValues => &["column", "values"],
            CheckKind::Range => &["column", "min", "max"],
            CheckKind::Matches => &["column", "pattern"],
            CheckKind::MaxLength => &["column", "max"],
            CheckKind::Relationship => &["column", "to"],
            CheckKind::Expression => &["sql"],
        };
        let given = [
            ("column", self.column.is_some()),
            ("columns", self.columns.is_some()),
            ("values", self.values.is_some()),
            ("min", self.min.is_some()),
            ("max", self.max.is_some()),
            ("pattern", self.pattern.is_some()),
            ("to", self.to.is_some()),
            ("sql", self.sql.is_some()),
            ("scope", self.scope.is_some()),
        ];
        for (key, _) in given.iter().filter(|(k, g)| *g && !takes.contains(k)) {
            errors.push(format!("{at}.{key}: check {kind} takes no `{key}`"));
        }
        let need = |v: &Option<String>, key: &str, errors: &mut Vec<String>| -> String {
            match v.as_deref() {
                Some(s) if !s.is_empty() => s.to_string(),
                _ => {
                    errors.push(format!("{at}: check {kind} needs `{key}`"));
                    String::new()
                }
            }
        };
        let columns = |errors: &mut Vec<String>| -> Vec<String> {
            let c = self
                .columns
                .as_ref()
                .map(OneOrMany::to_vec)
                .unwrap_or_default();
            if c.is_empty() || c.iter().any(String::is_empty) {
                errors.push(format!(
                    "{at}: check {kind} needs `columns` (one or more names)"
                ));
            }
            c
        };
        let rule = match self.check {
            CheckKind::RowCount => {
                let min = count_bound(&self.min, "min", at, &mut errors);
                let max = count_bound(&self.max, "max", at, &mut errors);
                if min.is_none() && max.is_none() && self.min.is_none() && self.max.is_none() {
                    errors.push(format!("{at}: check row_count needs `min` or `max`"));
                }
                if let (Some(a), Some(b)) = (min, max) {
                    if a > b {
                        errors.push(format!("{at}: row_count min {a} is above max {b}"));
                    }
                }
                Rule::RowCount { min, max }
            }
            CheckKind::NotNull => Rule::NotNull(columns(&mut errors)),
            CheckKind::Unique => Rule::Unique {
                columns: columns(&mut errors),
                scope: self.scope.unwrap_or(Scope::File),
            },
            CheckKind::AcceptedValues => {
                let column = need(&self.column, "column", &mut errors);
                let values = self.values.clone().unwrap_or_default();
                if values.is_empty() {
                    errors.push(format!("{at}: check accepted_values needs `values`"));
                }
                Rule::AcceptedValues { column, values }
            }
            CheckKind::Range => {
                let column = need(&self.column, "column", &mut errors);
                if self.min.is_none() && self.max.is_none() {
                    errors.push(format!("{at}: check range needs `min` or `max`"));
                }
                Rule::Range {
                    column,
                    min: self.min.as_ref().map(Bound::text),
                    max: self.max.as_ref().map(Bound::text),
                }
            }
            CheckKind::Matches => Rule::Matches {
                column: need(&self.column, "column", &mut errors),
                pattern: need(&self.pattern, "pattern", &mut errors),
            },
            CheckKind::MaxLength => {
                let column = need(&self.column, "column", &mut errors);
                let max = count_bound(&self.max, "max", at, &mut errors);
                if self.max.is_none() {
                    errors.push(format!("{at}: check max_length needs `max`"));
                }
                Rule::MaxLength {
                    column,
                    max: max.unwrap_or(0),
                }
            }
            CheckKind::Relationship => {
                let column = need(&self.column, "column", &mut errors);
                let to = need(&self.to, "to", &mut errors);
                let (table, to_column) = match to.rsplit_once('.') {
                    Some((t, c)) if !c.is_empty() => match TableName::parse(t) {
                        Ok(t) => (t, c.to_string()),
                        Err(e) => {
                            errors.push(format!("{at}.to: {e}"));
                            (TableName::parse("x").expect("a name"), String::new())
                        }
                    },
                    _ => {
                        if !to.is_empty() {
                            errors.push(format!(
                                "{at}.to: {to:?} is not `table.column` or `schema.table.column`"
                            ));
                        }
                        (TableName::parse("x").expect("a name"), String::new())
                    }
                };
                Rule::Relationship {
                    column,
                    table,
                    to_column,
                }
            }
            CheckKind::Expression => {
                let sql = need(&self.sql, "sql", &mut errors);
                if self.name.is_none() {
                    errors.push(format!("{at}: check expression needs a `name`"));
                }
                if let Some(p) = (!sql.is_empty())
                    .then(|| expression_problem(&sql))
                    .flatten()
                {
                    errors.push(format!("{at}.sql: {sql:?} {p}"));
                }
                Rule::Expression(sql)
            }
        };
        let error_if = threshold(&self.error_if, "error_if", at, &mut errors);
        let warn_if = threshold(&self.warn_if, "warn_if", at, &mut errors);
        if self.severity == Some(Severity::Warn) && self.error_if.is_some() {
            errors.push(format!(
                "{at}.error_if: a check of severity warn never errors"
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| default_name(&kind, &rule));
        Ok(Check {
            name,
            rule,
            severity: self.severity.unwrap_or(Severity::Error),
            error_if,
            warn_if,
        })
    }
}

fn default_name(kind: &str, rule: &Rule) -> String {
    let cols = match rule {
        Rule::RowCount { .. } | Rule::Expression(_) => return kind.to_string(),
        Rule::NotNull(c) | Rule::Unique { columns: c, .. } => c.join(","),
        Rule::AcceptedValues { column, .. }
        | Rule::Range { column, .. }
        | Rule::Matches { column, .. }
        | Rule::MaxLength { column, .. }
        | Rule::Relationship { column, .. } => column.clone(),
    };
    format!("{kind}({cols})")
}

#[cfg(test)]
mod tests;
