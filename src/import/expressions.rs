//! `expression` checks validated when manifests are applied: the target's
//! server plans each one against its table (`EXPLAIN`, in a read-only
//! transaction: no row is read, no function runs), so that a misspelt
//! column or a type mismatch refuses the apply instead of failing every
//! file that comes.
//!
//! Only the projects the apply creates or changes are looked at. A table
//! that does not exist yet (created by the first file), a table named by
//! the file, or a target that cannot be reached is left to the import,
//! which refuses the file by the same rule (`check NAME cannot run`).

use sqlx::{Connection, PgPool};

use crate::config::checks::{CheckSpec, Rule};
use crate::config::{ImportOptions, TableName};
use crate::manifest::{Desired, UrlState};
use crate::plan::{self, Action};
use crate::store::{self, StoreError};

/// Checks with the key each is written under.
type Keyed<'a> = Vec<(String, &'a CheckSpec)>;

/// One expression to validate: where it is written, its name and SQL, and
/// the table it runs over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The key it is written under (`tables[0].checks[1]`).
    pub at: String,
    /// The check's name.
    pub name: String,
    /// Its SQL.
    pub sql: String,
    /// The table, as the config names it.
    pub table: TableName,
}

/// The expressions of a project's config, each with every table it runs
/// over (pure): a `defaults` expression runs over each entry's table, an
/// entry's over its own. Entries without a table name are skipped.
pub fn planned(defaults: Option<&ImportOptions>, tables: &[ImportOptions]) -> Vec<Planned> {
    let table_of = |o: &ImportOptions| {
        o.table
            .as_deref()
            .or(defaults.and_then(|d| d.table.as_deref()))
            .and_then(|t| TableName::parse(t).ok())
    };
    let default_checks: Keyed = defaults
        .and_then(|d| d.checks.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (format!("defaults.checks[{i}]"), c))
        .collect();
    let mut entries: Vec<(Option<TableName>, Keyed)> = tables
        .iter()
        .enumerate()
        .map(|(t, o)| {
            let own = o.checks.iter().flatten().enumerate();
            let mut checks = default_checks.clone();
            checks.extend(own.map(|(i, c)| (format!("tables[{t}].checks[{i}]"), c)));
            (table_of(o), checks)
        })
        .collect();
    if tables.is_empty() {
        entries.push((defaults.and_then(table_of), default_checks));
    }
    let mut out = Vec::new();
    for (table, checks) in entries {
        let Some(table) = table else { continue };
        for (at, spec) in checks {
            let Ok(check) = spec.parse(&at) else { continue };
            if let Rule::Expression(sql) = check.rule {
                out.push(Planned {
                    at,
                    name: check.name,
                    sql,
                    table: table.clone(),
                });
            }
        }
    }
    out
}

/// Every problem of the expressions the apply of `desired` would write, by
/// project and key; none when all plan.
pub async fn refused(
    pool: &PgPool,
    desired: &Desired,
    owner: &str,
    adopt: bool,
) -> Result<Vec<String>, StoreError> {
    let observed = {
        let mut conn = pool.acquire().await.map_err(StoreError::Db)?;
        store::load_observed(&mut conn).await?
    };
    let plan = plan::plan(desired, &observed, owner, adopt);
    let mut problems = Vec::new();
    for change in &plan.projects {
        if !matches!(change.action, Action::Create | Action::Update) {
            continue;
        }
        let Some(p) = desired.projects.get(&change.name) else {
            continue;
        };
        let Ok(config) = store::parse_config(&p.config) else {
            continue;
        };
        let expressions = planned(config.defaults.as_ref(), &config.tables);
        if expressions.is_empty() {
            continue;
        }
        let Some(UrlState::Known(url)) = desired.connections.get(&p.connection).map(|c| &c.url)
        else {
            continue;
        };
        let mut conn = match super::target::connect(url, &p.name).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(project = %p.name, error = %e, "expressions not validated: the target cannot be reached; each file is checked at import");
                continue;
            }
        };
        for e in expressions {
            if let Some(why) = explain(&mut conn, &e).await {
                problems.push(format!(
                    "project {}: {} ({}): the server refuses the expression over {}: {why}",
                    p.name, e.at, e.name, e.table
                ));
            }
        }
        let _ = conn.close().await;
    }
    Ok(problems)
}

/// Why the server cannot plan `e` over its table, if it cannot (a missing
/// table is not a problem yet).
async fn explain(conn: &mut sqlx::PgConnection, e: &Planned) -> Option<String> {
    let mut tx = conn
        .begin_with("BEGIN READ ONLY")
        .await
        .map_err(|err| err.to_string())
        .ok()?;
    let sql = format!(
        "EXPLAIN SELECT 1 FROM {} WHERE NOT ({})",
        e.table.quoted(),
        e.sql
    );
    // `sql` passed `expression_problem` (one boolean, no statement) when
    // the manifests were validated.
    let r = sqlx::query(sqlx::AssertSqlSafe(sql))
        .persistent(false)
        .execute(&mut *tx)
        .await;
    let _ = tx.rollback().await;
    match r {
        Ok(_) => None,
        Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("42P01") => None,
        Err(sqlx::Error::Database(d)) => Some(d.message().to_string()),
        Err(other) => {
            tracing::warn!(error = %other, "expression not validated");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_expression_runs_over_every_table_it_applies_to() {
        let config: crate::config::ProjectConfig = serde_json::from_value(serde_json::json!({
            "defaults": {"table": "d", "checks": [
                {"check": "expression", "name": "pos", "sql": "amount >= 0"},
                {"check": "not_null", "columns": "id"}
            ]},
            "tables": [
                {"file_pattern": "o*", "table": "orders",
                 "checks": [{"check": "expression", "name": "st", "sql": "status <> ''"}]},
                {"file_pattern": "x*"},
            ]
        }))
        .unwrap();
        let got: Vec<(String, String, String)> = planned(config.defaults.as_ref(), &config.tables)
            .into_iter()
            .map(|p| (p.at, p.name, p.table.to_string()))
            .collect();
        let want = [
            ("defaults.checks[0]", "pos", "orders"),
            ("tables[0].checks[0]", "st", "orders"),
            ("defaults.checks[0]", "pos", "d"),
        ];
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(got, want);
    }
}
