//! The SQL of an import, generated from quoted identifiers only. Pure.

use crate::config::quote_ident;
use crate::import::encode::CopyFormat;

/// Name of the per-row sequence column of the staging table: the last row
/// of a key wins, so the merge needs the file order.
pub const ROW_COLUMN: &str = "__cpi_row";

/// A column as the merge SQL sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeColumn {
    /// The column's name.
    pub name: String,
    /// Compare as text: the type has no equality operator (json) or we
    /// cannot tell.
    pub compare_as_text: bool,
}

fn list(cols: &[&str]) -> String {
    cols.iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `COPY table (cols) FROM STDIN` in the given format.
pub fn copy_statement(table: &str, cols: &[&str], format: CopyFormat) -> String {
    let f = match format {
        CopyFormat::Binary => "binary",
        CopyFormat::Text => "text",
    };
    format!("COPY {table} ({}) FROM STDIN (FORMAT {f})", list(cols))
}

/// A staging table with exactly the file's columns, typed like the target
/// (`WITH NO DATA` copies types and typmods but no constraints or
/// defaults: a column absent from the file must not be overwritten by a
/// default), plus the row sequence.
pub fn create_stage(stage: &str, target: &str, cols: &[&str]) -> String {
    format!(
        "CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {}, 0::int8 AS {} FROM {target} WITH NO DATA",
        list(cols),
        quote_ident(ROW_COLUMN)
    )
}

/// The staging rows, one per key, the last one in the file winning. When
/// the keys are known to be distinct, the rows as they are (no sort).
fn source(stage: &str, cols: &[&str], key: &[&str], keys_unique: bool) -> String {
    if key.is_empty() || keys_unique {
        return format!("SELECT {} FROM {stage}", list(cols));
    }
    format!(
        "SELECT DISTINCT ON ({k}) {c} FROM {stage} ORDER BY {k}, {r} DESC",
        k = list(key),
        c = list(cols),
        r = quote_ident(ROW_COLUMN)
    )
}

fn side(prefix: &str, cols: &[&MergeColumn]) -> String {
    cols.iter()
        .map(|c| {
            let q = format!("{prefix}.{}", quote_ident(&c.name));
            if c.compare_as_text {
                format!("{q}::text")
            } else {
                q
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_match(a: &str, b: &str, key: &[&str]) -> String {
    key.iter()
        .map(|k| format!("{a}.{q} = {b}.{q}", q = quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `alias."a", alias."b"`.
fn qualified(alias: &str, names: &[&str]) -> String {
    names
        .iter()
        .map(|c| format!("{alias}.{}", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"a" = from."a", …`: the SET list of an update from `from`.
fn assignments(cols: &[&MergeColumn], from: &str) -> String {
    cols.iter()
        .map(|c| format!("{q} = {from}.{q}", q = quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One merge of staged rows into the target: what the statements of the
/// merging modes read.
#[derive(Debug, Clone, Copy)]
pub struct Merge<'a> {
    /// The target table, quoted.
    pub target: &'a str,
    /// The staging rows: a table, or a subquery with its alias.
    pub stage: &'a str,
    /// The loaded columns, in file order.
    pub cols: &'a [MergeColumn],
    /// The key's columns (none: replace without a key).
    pub key: &'a [&'a str],
    /// Each key stands once in the file: no `DISTINCT ON` sort.
    pub keys_unique: bool,
}

impl Merge<'_> {
    /// The columns' names, and the columns that are not the key.
    fn split_key(&self) -> (Vec<&str>, Vec<&MergeColumn>) {
        let names = self.cols.iter().map(|c| c.name.as_str()).collect();
        let rest = self
            .cols
            .iter()
            .filter(|c| !self.key.contains(&c.name.as_str()))
            .collect();
        (names, rest)
    }

    /// The staging rows, one per key: see [`source`].
    fn source(&self, names: &[&str]) -> String {
        source(self.stage, names, self.key, self.keys_unique)
    }

    /// Upsert: one row per key; a row identical to the stored one is
    /// neither rewritten nor even locked (an anti-join drops it before `ON
    /// CONFLICT`, which would lock it), and not counted. Returns two
    /// counts: inserted, updated. `xmax = 0` tells a fresh insert from an
    /// update; it is exact here because the import holds the table's
    /// advisory lock and runs in one transaction.
    pub fn upsert(&self) -> String {
        let (target, key) = (self.target, self.key);
        let (names, rest) = self.split_key();
        let s_cols = qualified("s", &names);
        let mut unchanged = key_match("o", "s", key);
        let action = if rest.is_empty() {
            "DO NOTHING".to_string()
        } else {
            unchanged.push_str(&format!(
                " AND ROW({}) IS NOT DISTINCT FROM ROW({})",
                side("o", &rest),
                side("s", &rest)
            ));
            let set = assignments(&rest, "EXCLUDED");
            format!(
                "DO UPDATE SET {set} WHERE ROW({}) IS DISTINCT FROM ROW({})",
                side("t", &rest),
                side("EXCLUDED", &rest)
            )
        };
        format!(
            "WITH up AS (INSERT INTO {target} AS t ({c}) SELECT {s_cols} FROM ({src}) s \
             WHERE NOT EXISTS (SELECT 1 FROM {target} o WHERE {unchanged}) \
             ON CONFLICT ({k}) {action} RETURNING (t.xmax = 0) AS inserted) \
             SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up",
            c = list(&names),
            src = self.source(&names),
            k = list(key),
        )
    }

    /// Upsert as one `MERGE` (PostgreSQL ≥ 15), same effect as
    /// [`Self::upsert`] but one join instead of two: the staging rows
    /// joined once to the table, whose matched rows are updated in place by
    /// their position. `INSERT … ON CONFLICT` joins once to drop the
    /// unchanged rows, then probes the key index again per remaining row
    /// and locks it before updating. An unchanged row is neither rewritten
    /// nor locked here either. Each insert advances [`INSERTED_COUNTER`]
    /// (the condition is evaluated once per unmatched row): inserted = the
    /// counter, updated = the rest of the command's row count. Unlike `ON
    /// CONFLICT` it does not wait for a concurrent insert of the same key:
    /// the caller falls back to [`Self::upsert`] on a unique violation, and
    /// uses it only where `ON CONFLICT (key)` has an arbiter index.
    pub fn merge_upsert(&self) -> String {
        let (names, rest) = self.split_key();
        let update = if rest.is_empty() {
            String::new()
        } else {
            let set = assignments(&rest, "s");
            format!(
                " WHEN MATCHED AND ROW({}) IS DISTINCT FROM ROW({}) THEN UPDATE SET {set}",
                side("t", &rest),
                side("s", &rest)
            )
        };
        let values = qualified("s", &names);
        format!(
            "MERGE INTO {target} AS t USING ({src}) s ON {on}{update} \
             WHEN NOT MATCHED AND nextval('{INSERTED_COUNTER}') > 0 THEN INSERT ({c}) VALUES ({values})",
            target = self.target,
            src = self.source(&names),
            on = key_match("t", "s", self.key),
            c = list(&names),
        )
    }

    /// Replace: every row of the file (one per key when there is one).
    pub fn insert_all(&self) -> String {
        let (names, _) = self.split_key();
        format!(
            "INSERT INTO {} ({}) {}",
            self.target,
            list(&names),
            self.source(&names)
        )
    }

    /// Sync: rows whose key is not in the file.
    pub fn delete_missing(&self) -> String {
        let cond = key_match("s", "t", self.key);
        format!(
            "DELETE FROM {} t WHERE NOT EXISTS (SELECT 1 FROM {} s WHERE {cond})",
            self.target, self.stage
        )
    }
}

/// Name of the temporary sequence that counts the rows
/// [`Merge::merge_upsert`] inserts (PostgreSQL 15's `MERGE` has no
/// `RETURNING`).
pub const INSERTED_COUNTER: &str = "pg_temp.cpi_inserted";

/// `CREATE TABLE` for `create_table`: every column `text`, with the key.
pub fn create_table(target: &str, cols: &[String], key: &[String]) -> String {
    let mut defs: Vec<String> = cols
        .iter()
        .map(|c| format!("{} text", quote_ident(c)))
        .collect();
    if !key.is_empty() {
        let k: Vec<&str> = key.iter().map(String::as_str).collect();
        defs.push(format!("PRIMARY KEY ({})", list(&k)));
    }
    format!("CREATE TABLE {target} ({})", defs.join(", "))
}

/// The columns of a ledger entry, the same in `cpi.imported_files` and in
/// `cpi.superseded_files`, where a replay moves an entry whole.
macro_rules! ledger_entry_columns {
    () => {
        "
    project TEXT NOT NULL,
    target_table TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    job_id UUID NOT NULL,
    file_name TEXT NOT NULL,
    rows BIGINT NOT NULL,"
    };
}

/// The statements that create `cpi.imported_files`, the ledger.
pub const CREATE_LEDGER: &[&str] = &[
    "CREATE SCHEMA IF NOT EXISTS cpi",
    concat!(
        "CREATE TABLE IF NOT EXISTS cpi.imported_files (",
        ledger_entry_columns!(),
        "
    imported_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    PRIMARY KEY (project, target_table, sha256)
)"
    ),
];

/// The ledger entries that replays superseded (`cpi jobs replay`).
pub const CREATE_SUPERSEDED: &str = concat!(
    "CREATE TABLE IF NOT EXISTS cpi.superseded_files (",
    ledger_entry_columns!(),
    "
    imported_at TIMESTAMP WITH TIME ZONE NOT NULL,
    superseded_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    superseded_by UUID NOT NULL
)"
);

#[cfg(test)]
mod tests {
    use super::*;

    const EVIL: &str = "id\"; DROP TABLE x; --";

    fn merge<'a>(
        target: &'a str,
        stage: &'a str,
        cols: &'a [MergeColumn],
        key: &'a [&'a str],
        keys_unique: bool,
    ) -> Merge<'a> {
        Merge {
            target,
            stage,
            cols,
            key,
            keys_unique,
        }
    }

    fn mc(n: &str) -> MergeColumn {
        MergeColumn {
            name: n.into(),
            compare_as_text: false,
        }
    }

    #[test]
    fn hostile_identifiers_stay_quoted() {
        let s = copy_statement("\"t\"", &[EVIL], CopyFormat::Binary);
        assert_eq!(
            s,
            "COPY \"t\" (\"id\"\"; DROP TABLE x; --\") FROM STDIN (FORMAT binary)"
        );
        let c = create_table("\"t\"", &[EVIL.to_string()], &[EVIL.to_string()]);
        assert_eq!(
            c,
            "CREATE TABLE \"t\" (\"id\"\"; DROP TABLE x; --\" text, PRIMARY KEY (\"id\"\"; DROP TABLE x; --\"))"
        );
    }

    #[test]
    fn upsert_last_row_wins_and_skips_unchanged() {
        let s = merge("\"t\"", "st", &[mc("id"), mc("a")], &["id"], false).upsert();
        assert!(s.contains("SELECT DISTINCT ON (\"id\") \"id\", \"a\" FROM st ORDER BY \"id\", \"__cpi_row\" DESC"), "{s}");
        assert!(s.contains("WHERE NOT EXISTS (SELECT 1 FROM \"t\" o WHERE o.\"id\" = s.\"id\" AND ROW(o.\"a\") IS NOT DISTINCT FROM ROW(s.\"a\"))"), "{s}");
        let fast = merge("\"t\"", "st", &[mc("id"), mc("a")], &["id"], true).upsert();
        assert!(
            fast.contains("FROM (SELECT \"id\", \"a\" FROM st) s"),
            "{fast}"
        );
        assert!(s.contains("ON CONFLICT (\"id\") DO UPDATE SET \"a\" = EXCLUDED.\"a\" WHERE ROW(t.\"a\") IS DISTINCT FROM ROW(EXCLUDED.\"a\")"), "{s}");
        let only_key = merge("\"t\"", "s", &[mc("id")], &["id"], false).upsert();
        assert!(only_key.contains("DO NOTHING"), "{only_key}");
        let json = merge(
            "\"t\"",
            "s",
            &[
                mc("id"),
                MergeColumn {
                    name: "j".into(),
                    compare_as_text: true,
                },
            ],
            &["id"],
            false,
        )
        .upsert();
        assert!(json.contains("ROW(t.\"j\"::text)"), "{json}");
    }

    #[test]
    fn merge_upsert_updates_changed_rows_and_counts_inserts() {
        let s = merge("\"t\"", "st", &[mc("id"), mc("a")], &["id"], false).merge_upsert();
        assert_eq!(
            s,
            "MERGE INTO \"t\" AS t USING (SELECT DISTINCT ON (\"id\") \"id\", \"a\" FROM st ORDER BY \"id\", \"__cpi_row\" DESC) s \
             ON t.\"id\" = s.\"id\" WHEN MATCHED AND ROW(t.\"a\") IS DISTINCT FROM ROW(s.\"a\") THEN UPDATE SET \"a\" = s.\"a\" \
             WHEN NOT MATCHED AND nextval('pg_temp.cpi_inserted') > 0 THEN INSERT (\"id\", \"a\") VALUES (s.\"id\", s.\"a\")"
        );
        let only_key = merge("\"t\"", "st", &[mc("id")], &["id"], true).merge_upsert();
        assert!(!only_key.contains("WHEN MATCHED"), "{only_key}");
        assert!(
            only_key.contains("USING (SELECT \"id\" FROM st) s"),
            "{only_key}"
        );
    }

    #[test]
    fn sync_deletes_by_key() {
        assert_eq!(
            merge("\"t\"", "s", &[], &["a", "b"], false).delete_missing(),
            "DELETE FROM \"t\" t WHERE NOT EXISTS (SELECT 1 FROM s s WHERE s.\"a\" = t.\"a\" AND s.\"b\" = t.\"b\")"
        );
    }
}
