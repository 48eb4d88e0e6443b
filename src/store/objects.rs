//! Connections and projects as a reconciler sees them: both tables read
//! for the plan, and the apply's writes, each one statement over arrays so
//! that 10,000 objects cost a handful of round trips.

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use super::error::Result;
use crate::manifest::UrlState;
use crate::plan::{ConnState, Observed, ProjState, Row};

type ConnRow = (
    Uuid,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);
type ProjRow = (
    Uuid,
    String,
    Option<String>,
    Option<String>,
    serde_json::Value,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Both tables, as the plan sees them.
pub async fn load_observed(conn: &mut PgConnection) -> Result<Observed> {
    let conns: Vec<ConnRow> = sqlx::query_as(
        "SELECT id, name, description, database_url, managed_by, source, applied_digest FROM cpi_connections",
    )
    .fetch_all(&mut *conn)
    .await?;
    let projs: Vec<ProjRow> = sqlx::query_as(
        "SELECT p.id, p.name, p.description, c.name, p.config, p.managed_by, p.source, p.applied_digest
           FROM cpi_projects p LEFT JOIN cpi_connections c ON c.id = p.connection_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let objects = super::simple::load_objects(&mut *conn).await?;
    Ok(Observed {
        objects,
        connections: conns
            .into_iter()
            .map(
                |(id, name, description, url, managed_by, source, digest)| Row {
                    id: Some(id),
                    stored_digest: Some(crate::plan::connection_digest(
                        &name,
                        description.as_deref(),
                        &url,
                    )),
                    state: ConnState {
                        name,
                        description,
                        // Without the key an encrypted URL is unknown: the
                        // other fields still plan (apply refuses to write).
                        url: crate::crypto::open(&url)
                            .map(UrlState::Known)
                            .unwrap_or(UrlState::Unknown),
                        managed_by,
                        source,
                    },
                    applied_digest: digest,
                },
            )
            .collect(),
        projects: projs
            .into_iter()
            .map(
                |(id, name, description, connection, config, managed_by, source, digest)| {
                    let state = ProjState {
                        name,
                        description,
                        connection,
                        config,
                        managed_by,
                        source,
                    };
                    Row {
                        id: Some(id),
                        stored_digest: Some(crate::plan::project_digest(&state)),
                        state,
                        applied_digest: digest,
                    }
                },
            )
            .collect(),
    })
}

/// The columns a reconciler writes of every row, whatever its kind.
#[derive(Debug, Clone)]
pub struct Managed {
    name: String,
    description: Option<String>,
    managed_by: Option<String>,
    source: Option<String>,
    applied_digest: String,
}

impl Managed {
    /// The row's unique name (the upsert's key), description, owner,
    /// manifest file and the digest of the row as written.
    pub fn new(
        name: &str,
        description: &Option<String>,
        managed_by: &Option<String>,
        source: &Option<String>,
        applied_digest: String,
    ) -> Self {
        Managed {
            name: name.to_string(),
            description: description.clone(),
            managed_by: managed_by.clone(),
            source: source.clone(),
            applied_digest,
        }
    }
}

/// A connection to create or update.
#[derive(Debug, Clone)]
pub struct ConnectionWrite {
    /// Its managed columns.
    pub managed: Managed,
    /// The URL as stored (sealed when there is a key).
    pub database_url: String,
}

/// A project to create or update.
#[derive(Debug, Clone)]
pub struct ProjectWrite {
    /// Its managed columns.
    pub managed: Managed,
    /// Its connection, by name (looked up in the same statement).
    pub connection: Option<String>,
    /// Its config, as stored.
    pub config: serde_json::Value,
}

/// [`Managed`] as one array per column, bound as `$1`..`$5` in this order:
/// name, description, managed_by, source, applied_digest.
#[derive(Default)]
struct ManagedColumns {
    names: Vec<String>,
    descriptions: Vec<Option<String>>,
    owners: Vec<Option<String>>,
    sources: Vec<Option<String>>,
    digests: Vec<String>,
}

impl ManagedColumns {
    fn of<'a>(rows: impl Iterator<Item = &'a Managed>) -> Self {
        let mut columns = ManagedColumns::default();
        for m in rows {
            columns.names.push(m.name.clone());
            columns.descriptions.push(m.description.clone());
            columns.owners.push(m.managed_by.clone());
            columns.sources.push(m.source.clone());
            columns.digests.push(m.applied_digest.clone());
        }
        columns
    }

    fn bind<'q>(&'q self, q: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments> {
        q.bind(&self.names)
            .bind(&self.descriptions)
            .bind(&self.owners)
            .bind(&self.sources)
            .bind(&self.digests)
    }
}

/// Creates or updates (by name) the connections, in one statement.
pub async fn upsert_connections(tx: &mut PgConnection, rows: &[ConnectionWrite]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let managed = ManagedColumns::of(rows.iter().map(|r| &r.managed));
    let urls: Vec<&str> = rows.iter().map(|r| r.database_url.as_str()).collect();
    let insert = sqlx::query(
        "INSERT INTO cpi_connections (name, description, managed_by, source, applied_digest, database_url)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
         ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description,
             database_url = EXCLUDED.database_url, managed_by = EXCLUDED.managed_by,
             source = EXCLUDED.source, applied_digest = EXCLUDED.applied_digest, updated_at = NOW()",
    );
    managed.bind(insert).bind(&urls).execute(&mut *tx).await?;
    Ok(())
}

/// Creates or updates (by name) the projects, in one statement; a
/// connection upserted before in the same transaction is found.
pub async fn upsert_projects(tx: &mut PgConnection, rows: &[ProjectWrite]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let managed = ManagedColumns::of(rows.iter().map(|r| &r.managed));
    // No connection: a name no row has, so the join leaves it NULL.
    let connections: Vec<&str> = rows
        .iter()
        .map(|r| r.connection.as_deref().unwrap_or_default())
        .collect();
    let configs: Vec<serde_json::Value> = rows.iter().map(|r| r.config.clone()).collect();
    // The connection id is looked up by name in the same statement.
    let insert = sqlx::query(
        "INSERT INTO cpi_projects (name, description, connection_id, config, managed_by, source, applied_digest)
         SELECT u.name, u.description, c.id, u.config, u.managed_by, u.source, u.digest
           FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[])
                AS u(name, description, managed_by, source, digest, connection, config)
           LEFT JOIN cpi_connections c ON c.name = u.connection
         ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description,
             connection_id = EXCLUDED.connection_id, config = EXCLUDED.config,
             managed_by = EXCLUDED.managed_by, source = EXCLUDED.source,
             applied_digest = EXCLUDED.applied_digest, updated_at = NOW()",
    );
    managed
        .bind(insert)
        .bind(&connections)
        .bind(&configs)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Deletes projects, then connections (projects reference connections),
/// by id.
pub async fn delete_objects(
    tx: &mut PgConnection,
    projects: &[Uuid],
    connections: &[Uuid],
) -> Result<()> {
    for (table, ids) in [("cpi_projects", projects), ("cpi_connections", connections)] {
        if !ids.is_empty() {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE id = ANY($1)"
            )))
            .bind(ids)
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}
