//! `cpi_objects`: the rows of Provider, Alert, Receiver, ApiToken and RoleBinding, one
//! table for all of them, read for the plan and written by the apply, each
//! one statement over arrays.

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::error::Result;
use crate::manifest::Kind;
use crate::plan::{ObjState, Row};

type ObjRow = (
    Uuid,
    String,
    String,
    serde_json::Value,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Every `cpi_objects` row of a kind this binary knows, as the plan sees it.
pub async fn load_objects(db: impl PgExecutor<'_>) -> Result<Vec<Row<ObjState>>> {
    let rows: Vec<ObjRow> = sqlx::query_as(
        "SELECT id, kind, name, spec, managed_by, source, applied_digest FROM cpi_objects ORDER BY kind, name",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, kind, name, spec, managed_by, source, digest)| {
            // A kind of a newer cpi is left alone: never planned, never deleted.
            let kind = Kind::parse(&kind)?;
            let state = ObjState {
                kind,
                name,
                spec,
                managed_by,
                source,
            };
            Some(Row {
                id: Some(id),
                stored_digest: Some(crate::plan::object_digest(&state)),
                state,
                applied_digest: digest,
            })
        })
        .collect())
}

/// The specs of one kind, by name (what the daemon acts on).
pub async fn specs(
    db: impl PgExecutor<'_>,
    kind: Kind,
) -> Result<Vec<(String, serde_json::Value)>> {
    Ok(
        sqlx::query_as("SELECT name, spec FROM cpi_objects WHERE kind = $1 ORDER BY name")
            .bind(kind.as_str())
            .fetch_all(db)
            .await?,
    )
}

/// One object's spec, if there is such a row.
pub async fn spec(
    db: impl PgExecutor<'_>,
    kind: Kind,
    name: &str,
) -> Result<Option<serde_json::Value>> {
    let row: Option<(serde_json::Value,)> =
        sqlx::query_as("SELECT spec FROM cpi_objects WHERE kind = $1 AND name = $2")
            .bind(kind.as_str())
            .bind(name)
            .fetch_optional(db)
            .await?;
    Ok(row.map(|(s,)| s))
}

/// Creates or updates (by kind and name) the objects, in one statement.
pub async fn upsert_objects(tx: &mut PgConnection, rows: &[&ObjState]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let specs: Vec<serde_json::Value> = rows.iter().map(|r| r.spec.clone()).collect();
    let owners: Vec<Option<&str>> = rows.iter().map(|r| r.managed_by.as_deref()).collect();
    let sources: Vec<Option<&str>> = rows.iter().map(|r| r.source.as_deref()).collect();
    let digests: Vec<String> = rows.iter().map(|r| crate::plan::object_digest(r)).collect();
    sqlx::query(
        "INSERT INTO cpi_objects (kind, name, spec, managed_by, source, applied_digest)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::text[])
         ON CONFLICT (kind, name) DO UPDATE SET spec = EXCLUDED.spec,
             managed_by = EXCLUDED.managed_by, source = EXCLUDED.source,
             applied_digest = EXCLUDED.applied_digest, updated_at = NOW()",
    )
    .bind(&kinds)
    .bind(&names)
    .bind(&specs)
    .bind(&owners)
    .bind(&sources)
    .bind(&digests)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Deletes objects by id.
pub async fn delete_objects(tx: &mut PgConnection, ids: &[Uuid]) -> Result<()> {
    if !ids.is_empty() {
        sqlx::query("DELETE FROM cpi_objects WHERE id = ANY($1)")
            .bind(ids)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// The kinds the API's access rules are made of.
const ACCESS_KINDS: [&str; 2] = ["ApiToken", "RoleBinding"];

/// One access row: kind, name, spec, owner.
pub type AccessRow = (String, String, serde_json::Value, Option<String>);

/// Every ApiToken and RoleBinding row.
pub async fn access_rows(db: impl PgExecutor<'_>) -> Result<Vec<AccessRow>> {
    Ok(sqlx::query_as(
        "SELECT kind, name, spec, managed_by FROM cpi_objects WHERE kind = ANY($1) ORDER BY kind, name",
    )
    .bind(&ACCESS_KINDS[..])
    .fetch_all(db)
    .await?)
}

/// A digest of every ApiToken and RoleBinding row, computed by the
/// database: it changes whenever one is added, changed or removed, and a
/// poll that finds it unchanged moves a few bytes.
pub async fn access_fingerprint(db: impl PgExecutor<'_>) -> Result<String> {
    let (d,): (Option<String>,) = sqlx::query_as(
        "SELECT md5(string_agg(kind || '/' || name || '/' || spec::text || '/' || coalesce(managed_by, ''),
                               ',' ORDER BY kind, name))
         FROM cpi_objects WHERE kind = ANY($1)",
    )
    .bind(&ACCESS_KINDS[..])
    .fetch_one(db)
    .await?;
    Ok(d.unwrap_or_default())
}
