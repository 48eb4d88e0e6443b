//! A target table's name, from a config or a file name, and how it is
//! quoted for SQL.

use serde::Serialize;

/// A text that is not a `table` or `schema.table` name (each part 1-63
/// characters, no NUL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table {0:?} is not a valid `table` or `schema.table` name")]
pub struct TableNameError(pub String);

/// A target table, `table` or `schema.table`. Both parts are quoted
/// wherever they reach SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TableName {
    /// The schema, when given.
    pub schema: Option<String>,
    /// The table.
    pub name: String,
}

impl TableName {
    /// Parses `table` or `schema.table`.
    pub fn parse(s: &str) -> Result<TableName, TableNameError> {
        let parts: Vec<&str> = s.split('.').collect();
        let bad = |p: &str| p.is_empty() || p.len() > 63 || p.contains('\0');
        match parts.as_slice() {
            [t] if !bad(t) => Ok(TableName {
                schema: None,
                name: t.to_string(),
            }),
            [s, t] if !bad(s) && !bad(t) => Ok(TableName {
                schema: Some(s.to_string()),
                name: t.to_string(),
            }),
            _ => Err(TableNameError(s.to_string())),
        }
    }

    /// The quoted SQL form, e.g. `"sales"."orders"`.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&self.name)),
            None => quote_ident(&self.name),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Quotes an SQL identifier: every name from a manifest or a CSV header goes
/// through here, so none can break out of its quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A file stem as a safe identifier: lower case, `[a-z0-9_]`, not starting
/// with a digit (`Orders 2024-01.csv.gz` → `orders_2024_01`).
pub fn table_from_file_name(file_name: &str) -> String {
    let mut stem = file_name;
    for ext in [".gz", ".zst", ".csv", ".tsv", ".txt"] {
        if stem.len() > ext.len() && stem.to_ascii_lowercase().ends_with(ext) {
            stem = &stem[..stem.len() - ext.len()];
        }
    }
    let mut out: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out.truncate(63);
    out
}
