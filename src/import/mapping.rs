//! Which CSV field goes into which target column (DESIGN §3: `columns`
//! renames, case-insensitive names, `header: false`, `extra_columns`,
//! `missing_columns`). Pure.

use std::collections::{BTreeMap, HashSet};

use crate::config::{quote_ident, ColumnPolicy, ExtraColumns};

/// The file's fields that are loaded, in file order: `(field index, target
/// column index)`. Fields not listed are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// `(field index, target column index)` of every loaded field.
    pub fields: Vec<(usize, usize)>,
    /// Fields per record the file must have.
    pub width: usize,
}

/// What [`map_columns`] decides from.
pub struct MappingInput<'a> {
    /// The header record, or `None` with `header: false`.
    pub header: Option<&'a [String]>,
    /// Fields in the first record (used when there is no header).
    pub first_width: usize,
    /// The table's columns, in table order.
    pub table_columns: &'a [String],
    /// `columns` renames: header name → column.
    pub renames: &'a BTreeMap<String, String>,
    /// The key columns (must be loaded).
    pub primary_key: &'a [String],
    /// What to do with fields the table lacks (`add` has added them
    /// before: a field still unmatched is an error).
    pub extra_columns: ExtraColumns,
    /// What to do with columns the file lacks.
    pub missing_columns: ColumnPolicy,
    /// How the table is named in messages.
    pub table: &'a str,
}

/// The target name a header maps to: a `columns` entry (exact, else
/// case-insensitive), else the header itself.
pub fn renamed<'a>(renames: &'a BTreeMap<String, String>, header: &'a str) -> &'a str {
    if let Some(t) = renames.get(header) {
        return t;
    }
    renames
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(header))
        .map_or(header, |(_, v)| v.as_str())
}

/// Why a header cannot name a table's columns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// More fields than a table may have columns.
    #[error("the header has {0} columns, more than the {MAX_HEADER_COLUMNS} a table may have")]
    TooWide(usize),
    /// A field without a name.
    #[error("the header has an empty column name")]
    EmptyName,
    /// A name longer than PostgreSQL's identifiers.
    #[error("header column {} is longer than 63 bytes", quote_ident(.0))]
    TooLong(String),
    /// A name with a NUL byte: PostgreSQL's names (and the protocol's
    /// query text) cannot hold one.
    #[error("header column {} contains a NUL byte, which a column name cannot hold", quote_ident(&.0.replace('\0', "\\0")))]
    Nul(String),
    /// The same name (ignoring case) twice.
    #[error("the header names column {} twice", quote_ident(.0))]
    Twice(String),
    /// A name that matches several columns differing only in case.
    #[error("column {} matches several columns of the table that differ only in case", quote_ident(.0))]
    Ambiguous(String),
}

/// The table column a name designates: exact match, else the one
/// case-insensitive match (two would be ambiguous).
pub fn find_column(columns: &[String], name: &str) -> Result<Option<usize>, HeaderError> {
    if let Some(i) = columns.iter().position(|c| c == name) {
        return Ok(Some(i));
    }
    let matches: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.to_lowercase() == name.to_lowercase())
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [] => Ok(None),
        [i] => Ok(Some(*i)),
        _ => Err(HeaderError::Ambiguous(name.to_string())),
    }
}

/// Every problem is reported, not just the first.
pub fn map_columns(m: &MappingInput) -> Result<Mapping, Vec<String>> {
    let mut errors = Vec::new();
    let mut fields: Vec<(usize, usize)> = Vec::new();
    let width;
    match m.header {
        Some(header) => {
            width = header.len();
            for (fi, h) in header.iter().enumerate() {
                let target = renamed(m.renames, h);
                match find_column(m.table_columns, target) {
                    Ok(Some(ci)) => {
                        if let Some(&(other, _)) = fields.iter().find(|(_, c)| *c == ci) {
                            errors.push(format!(
                                "header fields {} and {} both go to column {}",
                                quote_ident(header[other].as_str()),
                                quote_ident(h),
                                quote_ident(&m.table_columns[ci])
                            ));
                        } else {
                            fields.push((fi, ci));
                        }
                    }
                    Ok(None) => {
                        if m.extra_columns != ExtraColumns::Ignore {
                            errors.push(format!(
                                "column {} of the file is not a column of {} (extra_columns: {})",
                                quote_ident(h),
                                m.table,
                                m.extra_columns.as_str()
                            ));
                        }
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
        None => {
            width = m.first_width;
            for fi in 0..m.first_width {
                if fi < m.table_columns.len() {
                    fields.push((fi, fi));
                } else if m.extra_columns != ExtraColumns::Ignore {
                    errors.push(format!(
                        "the file has {} fields but {} has {} columns (extra_columns: {})",
                        m.first_width,
                        m.table,
                        m.table_columns.len(),
                        m.extra_columns.as_str()
                    ));
                    break;
                }
            }
        }
    }
    let covered = |ci: usize| fields.iter().any(|(_, c)| *c == ci);
    if m.missing_columns == ColumnPolicy::Error {
        for (ci, c) in m.table_columns.iter().enumerate() {
            if !covered(ci) {
                errors.push(format!(
                    "column {} of {} is not in the file (missing_columns: error)",
                    quote_ident(c),
                    m.table
                ));
            }
        }
    }
    for k in m.primary_key {
        match find_column(m.table_columns, k) {
            Ok(Some(ci)) if covered(ci) => {}
            Ok(Some(_)) => errors.push(format!(
                "primary key column {} is not in the file",
                quote_ident(k)
            )),
            Ok(None) => errors.push(format!(
                "primary key column {} is not a column of {}",
                quote_ident(k),
                m.table
            )),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if fields.is_empty() && errors.is_empty() {
        errors.push(format!("no column of the file is a column of {}", m.table));
    }
    if errors.is_empty() {
        Ok(Mapping { fields, width })
    } else {
        Err(errors)
    }
}

/// What the header and the table do not share: the header's names (after
/// the renames) that match no column of the table, and the table's columns
/// that no header name matches, each in its own order. An ambiguous name
/// counts as matched ([`map_columns`] reports it).
pub fn unmatched(
    header: &[String],
    renames: &BTreeMap<String, String>,
    table_columns: &[String],
) -> (Vec<String>, Vec<String>) {
    let mut matched = vec![false; table_columns.len()];
    let mut extra = Vec::new();
    for h in header {
        let target = renamed(renames, h);
        match find_column(table_columns, target) {
            Ok(Some(ci)) => matched[ci] = true,
            Ok(None) => extra.push(target.to_string()),
            Err(_) => {}
        }
    }
    let missing = table_columns
        .iter()
        .zip(matched)
        .filter(|(_, m)| !m)
        .map(|(c, _)| c.clone())
        .collect();
    (extra, missing)
}

/// The most fields a header may have: PostgreSQL's limit on a table's
/// columns. Checked when the header is read, before any per-column work, so
/// that a header of a million names costs no more than reading it.
pub const MAX_HEADER_COLUMNS: usize = crate::config::MAX_TABLE_COLUMNS as usize;

/// The names of a headerless file's columns: `column_1` to `column_{width}`.
pub fn numbered_columns(width: usize) -> Vec<String> {
    (1..=width).map(|i| format!("column_{i}")).collect()
}

/// Columns of a table created from a header (`create_table` without
/// declared columns): the renamed header names, every one `text`. Linear in
/// the header: the duplicate check is a set, not a scan per name.
pub fn columns_from_header(
    header: &[String],
    renames: &BTreeMap<String, String>,
) -> Result<Vec<String>, HeaderError> {
    if header.len() > MAX_HEADER_COLUMNS {
        return Err(HeaderError::TooWide(header.len()));
    }
    let mut out: Vec<String> = Vec::with_capacity(header.len());
    let mut seen: HashSet<String> = HashSet::with_capacity(header.len());
    for h in header {
        let name = renamed(renames, h).to_string();
        if name.is_empty() {
            return Err(HeaderError::EmptyName);
        }
        if name.len() > 63 {
            return Err(HeaderError::TooLong(name));
        }
        if name.contains('\0') {
            return Err(HeaderError::Nul(name));
        }
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(HeaderError::Twice(name));
        }
        out.push(name);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn input<'a>(
        header: Option<&'a [String]>,
        cols: &'a [String],
        renames: &'a BTreeMap<String, String>,
        key: &'a [String],
    ) -> MappingInput<'a> {
        MappingInput {
            header,
            first_width: 3,
            table_columns: cols,
            renames,
            primary_key: key,
            extra_columns: ExtraColumns::Error,
            missing_columns: ColumnPolicy::Ignore,
            table: "\"t\"",
        }
    }

    #[test]
    fn header_case_insensitive_and_renames() {
        let cols = s(&["id", "email", "name"]);
        let header = s(&["ID", "E-Mail", "Name"]);
        let renames = BTreeMap::from([("e-mail".to_string(), "email".to_string())]);
        let key = s(&["id"]);
        let m = map_columns(&input(Some(&header), &cols, &renames, &key)).unwrap();
        assert_eq!(m.fields, vec![(0, 0), (1, 1), (2, 2)]);
    }

    #[test]
    fn unmatched_names_both_sides() {
        let renames = BTreeMap::from([("Amt".to_string(), "amount".to_string())]);
        let (extra, missing) = unmatched(
            &s(&["ID", "Amt", "region", "Sold On"]),
            &renames,
            &s(&["id", "amount", "note"]),
        );
        assert_eq!(extra, s(&["region", "Sold On"]));
        assert_eq!(missing, s(&["note"]));
    }

    #[test]
    fn extra_and_missing_columns() {
        let cols = s(&["id", "a"]);
        let header = s(&["id", "zzz"]);
        let none = BTreeMap::new();
        let e = map_columns(&input(Some(&header), &cols, &none, &[])).unwrap_err();
        assert_eq!(
            e,
            vec!["column \"zzz\" of the file is not a column of \"t\" (extra_columns: error)"]
        );
        let mut i = input(Some(&header), &cols, &none, &[]);
        i.extra_columns = ExtraColumns::Ignore;
        i.missing_columns = ColumnPolicy::Error;
        let e = map_columns(&i).unwrap_err();
        assert_eq!(
            e,
            vec!["column \"a\" of \"t\" is not in the file (missing_columns: error)"]
        );
        i.missing_columns = ColumnPolicy::Ignore;
        assert_eq!(map_columns(&i).unwrap().fields, vec![(0, 0)]);
    }

    #[test]
    fn hostile_header_is_only_a_name() {
        let cols = s(&["id"]);
        let header = s(&["id\"; DROP TABLE x; --"]);
        let none = BTreeMap::new();
        let e = map_columns(&input(Some(&header), &cols, &none, &[])).unwrap_err();
        assert!(
            e[0].starts_with("column \"id\"\"; DROP TABLE x; --\" of the file"),
            "{e:?}"
        );
    }

    #[test]
    fn without_header_by_position() {
        let cols = s(&["a", "b"]);
        let none = BTreeMap::new();
        let e = map_columns(&input(None, &cols, &none, &[])).unwrap_err();
        assert!(e[0].contains("3 fields"), "{e:?}");
        let mut i = input(None, &cols, &none, &[]);
        i.first_width = 2;
        assert_eq!(map_columns(&i).unwrap().fields, vec![(0, 0), (1, 1)]);
    }

    #[test]
    fn key_must_be_in_file_and_no_duplicates() {
        let cols = s(&["id", "a"]);
        let header = s(&["a", "A"]);
        let none = BTreeMap::new();
        let key = s(&["id"]);
        let e = map_columns(&input(Some(&header), &cols, &none, &key)).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(columns_from_header(&s(&["a", "A"]), &none).is_err());
        assert_eq!(
            columns_from_header(&s(&["a", "B"]), &none).unwrap(),
            s(&["a", "B"])
        );
    }

    #[test]
    fn header_width_is_checked_first_and_duplicates_in_one_pass() {
        let none = BTreeMap::new();
        let wide: Vec<String> = (0..=MAX_HEADER_COLUMNS).map(|i| format!("c{i}")).collect();
        assert_eq!(
            columns_from_header(&wide, &none).unwrap_err().to_string(),
            "the header has 1601 columns, more than the 1600 a table may have"
        );
        let mut full: Vec<String> = wide[..MAX_HEADER_COLUMNS].to_vec();
        assert_eq!(columns_from_header(&full, &none).unwrap().len(), 1600);
        full[1599] = "C7".into();
        assert_eq!(
            columns_from_header(&full, &none).unwrap_err().to_string(),
            "the header names column \"C7\" twice"
        );
    }
}
