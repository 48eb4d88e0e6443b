//! The file's columns against its target table, before any row moves:
//! use the table or create it from the header, which field goes where,
//! the key, the COPY format, whether a staging table is needed. Pure: every
//! decision here is a function of its inputs, unit-tested as a decision
//! table.

use crate::config::{Mode, ResolvedOptions};
use crate::import::encode::{ColType, ColumnSpec, CopyFormat};
use crate::import::{mapping, sql};

/// Why a file does not fit its target table: the file is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `create_table` without a header to name the columns.
    #[error(
        "{file}: table {table} does not exist, and create_table needs a header to name its columns"
    )]
    CreateNeedsHeader {
        /// The file's name.
        file: String,
        /// The target table.
        table: String,
    },
    /// The header cannot name a new table's columns.
    #[error("{file}: {message}")]
    BadHeader {
        /// The file's name.
        file: String,
        /// What is wrong with the header.
        message: String,
    },
    /// The table does not exist and may not be created.
    #[error("table {table} does not exist in the target database (create_table is false)")]
    NoTable {
        /// The target table.
        table: String,
    },
    /// The file's fields do not map onto the table's columns.
    #[error("{file}: {}", problems.join("; "))]
    Mapping {
        /// The file's name.
        file: String,
        /// Every problem found.
        problems: Vec<String>,
    },
    /// Upsert and sync need a key.
    #[error("mode {mode} needs a primary_key")]
    NeedsKey {
        /// The mode.
        mode: &'static str,
    },
    /// The table has the column cpi reserves in its staging table.
    #[error(
        "table {table} has a column named {}, which cpi reserves",
        sql::ROW_COLUMN
    )]
    ReservedColumn {
        /// The target table.
        table: String,
    },
}

/// What to do about the target table before loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TablePlan {
    /// It exists: load into it.
    Existing,
    /// It does not: run this `CREATE TABLE` first.
    Create(String),
}

/// Decides the target table: `existing` is whether it exists now. A file
/// without a header (`width` fields in its first record) creates columns
/// `column_1` to `column_{width}`.
pub fn plan_table(
    file: &str,
    o: &ResolvedOptions,
    header: Option<&[String]>,
    width: usize,
    existing: bool,
) -> Result<TablePlan, PlanError> {
    if existing {
        return Ok(TablePlan::Existing);
    }
    if !o.create_table {
        return Err(PlanError::NoTable {
            table: o.table.to_string(),
        });
    }
    let numbered;
    let header = match header {
        Some(h) => h,
        None if width > 0 => {
            numbered = mapping::numbered_columns(width);
            &numbered
        }
        None => {
            return Err(PlanError::CreateNeedsHeader {
                file: file.to_string(),
                table: o.table.to_string(),
            })
        }
    };
    let cols = mapping::columns_from_header(header, &o.columns).map_err(|message| {
        PlanError::BadHeader {
            file: file.to_string(),
            message: message.to_string(),
        }
    })?;
    Ok(TablePlan::Create(sql::create_table(
        &o.table.quoted(),
        &cols,
        &o.primary_key,
    )))
}

/// How the file's fields go into the table.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnPlan {
    /// `(field index, column)` of every loaded field, in file order.
    pub fields: Vec<(usize, ColumnSpec)>,
    /// The loaded columns' names, in the same order.
    pub columns: Vec<String>,
    /// The primary key as the table spells it.
    pub key: Vec<String>,
    /// Positions of the key's columns in [`Self::columns`].
    pub key_fields: Vec<usize>,
    /// Fields per record the file must have.
    pub width: usize,
    /// Binary unless a column's type has no binary encoder here.
    pub format: CopyFormat,
    /// Whether rows go through a staging table (the merging modes, and
    /// replace with a key) rather than straight into the table.
    pub staged: bool,
    /// The loaded columns for the merge, with how to compare each.
    pub merge_columns: Vec<sql::MergeColumn>,
}

/// Maps the file (its header, or the width of its first record) onto the
/// table's columns `table`, as the catalog lists them.
pub fn plan_columns(
    file: &str,
    o: &ResolvedOptions,
    header: Option<&[String]>,
    first_width: usize,
    table: &[ColumnSpec],
) -> Result<ColumnPlan, PlanError> {
    let names: Vec<String> = table.iter().map(|c| c.name.clone()).collect();
    let key: Vec<String> = o
        .primary_key
        .iter()
        .filter_map(|k| mapping::find_column(&names, k).ok().flatten())
        .map(|i| names[i].clone())
        .collect();
    let table_label = format!("table {}", o.table);
    let m = mapping::map_columns(&mapping::MappingInput {
        header,
        first_width,
        table_columns: &names,
        renames: &o.columns,
        primary_key: &o.primary_key,
        extra_columns: o.extra_columns,
        missing_columns: o.missing_columns,
        table: &table_label,
    })
    .map_err(|problems| PlanError::Mapping {
        file: file.to_string(),
        problems,
    })?;
    if matches!(o.mode, Mode::Upsert | Mode::Sync) && key.is_empty() {
        return Err(PlanError::NeedsKey {
            mode: o.mode.as_str(),
        });
    }
    // Append, and replace without a key, COPY straight into the table,
    // unless checks must see the file's rows (and their lines) apart.
    let staged = match o.mode {
        Mode::Append => !o.checks.is_empty(),
        Mode::Replace => !key.is_empty() || !o.checks.is_empty(),
        Mode::Upsert | Mode::Sync => true,
    };
    if staged && names.iter().any(|n| n == sql::ROW_COLUMN) {
        return Err(PlanError::ReservedColumn {
            table: o.table.to_string(),
        });
    }
    let fields: Vec<(usize, ColumnSpec)> = m
        .fields
        .iter()
        .map(|&(fi, ci)| (fi, table[ci].clone()))
        .collect();
    let columns: Vec<String> = fields.iter().map(|(_, c)| c.name.clone()).collect();
    let format = if fields.iter().any(|(_, c)| c.ty == ColType::Other) {
        CopyFormat::Text
    } else {
        CopyFormat::Binary
    };
    let key_fields = key
        .iter()
        .filter_map(|k| columns.iter().position(|c| c == k))
        .collect();
    let merge_columns = fields
        .iter()
        .map(|(_, c)| sql::MergeColumn {
            name: c.name.clone(),
            compare_as_text: !c.ty.has_equality(),
        })
        .collect();
    Ok(ColumnPlan {
        fields,
        columns,
        key,
        key_fields,
        width: m.width,
        format,
        staged,
        merge_columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProjectConfig, TableName};

    fn opts(mode: Mode, key: &[&str], create: bool) -> ResolvedOptions {
        let mut o = ProjectConfig::default()
            .options_for("a.csv")
            .expect("the default pattern matches");
        o.table = TableName::parse("t").unwrap();
        o.mode = mode;
        o.primary_key = key.iter().map(|k| k.to_string()).collect();
        o.create_table = create;
        o.infer_types = false;
        o
    }

    fn col(name: &str, ty: ColType) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            ty,
            typmod: -1,
            not_null: false,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// (exists, create_table, header) → `Ok(creates the table?)` or the error.
    type TableRow<'a> = (bool, bool, Option<&'a [String]>, Result<bool, PlanError>);

    /// (columns, key, staged, format), or the start of the error message.
    type Expect = Result<(Vec<&'static str>, Vec<&'static str>, bool, CopyFormat), &'static str>;

    /// (mode, key, header, first width, table columns) → [`Expect`].
    type ColumnsRow<'a> = (
        Mode,
        &'a [&'a str],
        Option<&'a [String]>,
        usize,
        &'a [ColumnSpec],
        Expect,
    );

    #[test]
    fn table_decision_table() {
        let h = strings(&["id", "name"]);
        let dup = strings(&["id", "ID"]);
        let rows: Vec<TableRow> = vec![
            // (exists, create_table, header) → Ok(creates?) or the error
            (true, false, Some(&h), Ok(false)),
            (true, true, None, Ok(false)),
            (false, true, Some(&h), Ok(true)),
            (
                false,
                false,
                Some(&h),
                Err(PlanError::NoTable { table: "t".into() }),
            ),
            (
                false,
                true,
                None,
                Err(PlanError::CreateNeedsHeader {
                    file: "a.csv".into(),
                    table: "t".into(),
                }),
            ),
            (
                false,
                true,
                Some(&dup),
                Err(PlanError::BadHeader {
                    file: "a.csv".into(),
                    message: "the header names column \"ID\" twice".into(),
                }),
            ),
        ];
        for (exists, create, header, want) in rows {
            let got = plan_table("a.csv", &opts(Mode::Append, &[], create), header, 0, exists);
            match (want, got) {
                (Ok(false), Ok(TablePlan::Existing)) => {}
                (Ok(true), Ok(TablePlan::Create(sql))) => {
                    assert!(sql.starts_with("CREATE TABLE"), "{sql}")
                }
                (Err(w), Err(g)) => assert_eq!(w, g),
                (w, g) => panic!("exists {exists} create {create}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn a_headerless_file_creates_numbered_columns() {
        let o = opts(Mode::Append, &[], true);
        match plan_table("a.csv", &o, None, 3, false) {
            Ok(TablePlan::Create(sql)) => assert!(
                sql.contains("(\"column_1\" text, \"column_2\" text, \"column_3\" text)"),
                "{sql}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn columns_decision_table() {
        let table = vec![
            col("id", ColType::Int8),
            col("Name", ColType::Text),
            col("doc", ColType::Json),
        ];
        let other = vec![col("id", ColType::Int8), col("x", ColType::Other)];
        let reserved = vec![
            col("id", ColType::Int8),
            col(sql::ROW_COLUMN, ColType::Int8),
        ];
        let h = strings(&["id", "name"]);
        let h_doc = strings(&["doc", "id"]);
        let h_extra = strings(&["id", "nope"]);
        let rows: Vec<ColumnsRow> = vec![
            // (mode, key, header, first width, table) → (columns, key, staged, format) or error
            (
                Mode::Append,
                &[],
                Some(&h),
                0,
                &table,
                Ok((vec!["id", "Name"], vec![], false, CopyFormat::Binary)),
            ),
            (
                Mode::Append,
                &["ID"],
                Some(&h),
                0,
                &table,
                Ok((vec!["id", "Name"], vec!["id"], false, CopyFormat::Binary)),
            ),
            (
                Mode::Replace,
                &[],
                Some(&h),
                0,
                &table,
                Ok((vec!["id", "Name"], vec![], false, CopyFormat::Binary)),
            ),
            (
                Mode::Replace,
                &["id"],
                Some(&h),
                0,
                &table,
                Ok((vec!["id", "Name"], vec!["id"], true, CopyFormat::Binary)),
            ),
            (
                Mode::Upsert,
                &["id"],
                Some(&h_doc),
                0,
                &table,
                Ok((vec!["doc", "id"], vec!["id"], true, CopyFormat::Binary)),
            ),
            (
                Mode::Sync,
                &["id"],
                Some(&h),
                0,
                &table,
                Ok((vec!["id", "Name"], vec!["id"], true, CopyFormat::Binary)),
            ),
            (
                Mode::Append,
                &[],
                None,
                3,
                &table,
                Ok((vec!["id", "Name", "doc"], vec![], false, CopyFormat::Binary)),
            ),
            (
                Mode::Append,
                &[],
                None,
                2,
                &other,
                Ok((vec!["id", "x"], vec![], false, CopyFormat::Text)),
            ),
            (
                Mode::Upsert,
                &[],
                Some(&h),
                0,
                &table,
                Err("mode upsert needs a primary_key"),
            ),
            (
                Mode::Sync,
                &["nope"],
                Some(&h),
                0,
                &table,
                Err("a.csv: primary key column \"nope\" is not a column of table t"),
            ),
            (Mode::Append, &[], Some(&h_extra), 0, &table, Err("a.csv: ")),
            (
                Mode::Upsert,
                &["id"],
                None,
                2,
                &reserved,
                Err("table t has a column named __cpi_row, which cpi reserves"),
            ),
            (
                Mode::Append,
                &[],
                None,
                2,
                &reserved,
                Ok((
                    vec!["id", sql::ROW_COLUMN],
                    vec![],
                    false,
                    CopyFormat::Binary,
                )),
            ),
        ];
        for (i, (mode, key, header, width, cols, want)) in rows.into_iter().enumerate() {
            let got = plan_columns("a.csv", &opts(mode, key, false), header, width, cols);
            match (want, got) {
                (Ok((c, k, staged, format)), Ok(p)) => {
                    assert_eq!(p.columns, c, "row {i}");
                    assert_eq!(p.key, k, "row {i}");
                    assert_eq!(p.staged, staged, "row {i}");
                    assert_eq!(p.format, format, "row {i}");
                    assert_eq!(p.fields.len(), p.columns.len(), "row {i}");
                    assert_eq!(p.key_fields.len(), p.key.len(), "row {i}");
                }
                (Err(w), Err(g)) => {
                    assert!(
                        g.to_string().starts_with(w),
                        "row {i}: {g} does not start with {w}"
                    )
                }
                (w, g) => panic!("row {i}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn merge_compares_json_as_text() {
        let table = vec![col("id", ColType::Int8), col("doc", ColType::Json)];
        let h = strings(&["id", "doc"]);
        let p = plan_columns(
            "a.csv",
            &opts(Mode::Upsert, &["id"], false),
            Some(&h),
            0,
            &table,
        )
        .unwrap();
        let as_text: Vec<bool> = p.merge_columns.iter().map(|m| m.compare_as_text).collect();
        assert_eq!(as_text, vec![false, true]);
    }
}
