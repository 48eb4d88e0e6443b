//! Which schema the management database is at, against the migrations this
//! binary embeds: a binary older than the schema stops before touching
//! anything, instead of sqlx's "migration N was previously applied but is
//! missing in the resolved migrations", unless every migration it does not
//! know is one older binaries can live with (`cpi_schema_compat`, migration
//! 0089): then it runs beside the newer one, as a rolling upgrade needs.

use sqlx::PgExecutor;

use super::error::{Result, StoreError};

/// The migrations under `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Where a database's applied migrations stand against a binary's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaState {
    /// No migration applied yet (an empty database).
    Empty,
    /// Every applied migration is one this binary knows; `pending` of its
    /// own are not applied yet.
    Known {
        /// The newest applied version.
        at: i64,
        /// How many of this binary's migrations are not applied.
        pending: usize,
    },
    /// The database holds migrations newer than any this binary knows, all
    /// of them additive: it may run (a rolling upgrade), never migrate.
    Compatible {
        /// The newest applied version.
        at: i64,
        /// The newest version this binary knows.
        known: i64,
    },
    /// The database holds a migration newer than any this binary knows,
    /// and one that older binaries cannot live with.
    Newer {
        /// The newest applied version.
        at: i64,
        /// The newest version this binary knows.
        known: i64,
    },
}

/// Compares the versions applied to a database with those a binary knows;
/// `oldest_binary` is the database's `cpi_schema_compat` (the newest
/// migration a binary must know to run there), when it has one.
pub fn compare(applied: &[i64], known: &[i64], oldest_binary: Option<i64>) -> SchemaState {
    let newest_known = known.iter().copied().max().unwrap_or(0);
    let Some(at) = applied.iter().copied().max() else {
        return SchemaState::Empty;
    };
    if at > newest_known {
        return match oldest_binary {
            // Every migration this binary knows must be there too (a
            // binary with a migration the database skipped is not older).
            Some(oldest) if newest_known >= oldest && known.iter().all(|v| applied.contains(v)) => {
                SchemaState::Compatible {
                    at,
                    known: newest_known,
                }
            }
            _ => SchemaState::Newer {
                at,
                known: newest_known,
            },
        };
    }
    let pending = known.iter().filter(|v| !applied.contains(v)).count();
    SchemaState::Known { at, pending }
}

/// The database's `cpi_schema_compat.oldest_binary`, if it has the table.
pub async fn oldest_binary(db: impl PgExecutor<'_> + Copy) -> Result<Option<i64>> {
    let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass('cpi_schema_compat') IS NOT NULL")
        .fetch_one(db)
        .await?;
    if !exists {
        return Ok(None);
    }
    Ok(
        sqlx::query_scalar("SELECT oldest_binary FROM cpi_schema_compat")
            .fetch_optional(db)
            .await?,
    )
}

/// The versions this binary embeds (migrations/).
pub fn known_versions() -> Vec<i64> {
    MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .collect()
}

/// The versions applied to the database (none when sqlx's table is absent).
pub async fn applied_versions(db: impl PgExecutor<'_> + Copy) -> Result<Vec<i64>> {
    let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(db)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64,)> =
        sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|(v,)| v).collect())
}

/// The database's state against this binary; fails with
/// [`StoreError::SchemaNewer`] when the database is ahead of it.
pub async fn check(db: impl PgExecutor<'_> + Copy) -> Result<SchemaState> {
    let applied = applied_versions(db).await?;
    let known = known_versions();
    let newer = applied.iter().max() > known.iter().max();
    let oldest = if newer {
        oldest_binary(db).await?
    } else {
        None
    };
    match compare(&applied, &known, oldest) {
        SchemaState::Newer { at, known } => Err(StoreError::SchemaNewer { at, known }),
        state => Ok(state),
    }
}

/// The migrations of this binary not applied to the database yet, in the
/// order they would run: (version, description). Fails like [`check`] when
/// the database is ahead of this binary.
pub async fn pending(db: impl PgExecutor<'_> + Copy) -> Result<Vec<(i64, String)>> {
    if let SchemaState::Compatible { .. } = check(db).await? {
        return Ok(Vec::new());
    }
    let applied = applied_versions(db).await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
        .map(|m| (m.version, m.description.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_applied_is_empty() {
        assert_eq!(compare(&[], &[1, 2], None), SchemaState::Empty);
    }

    #[test]
    fn all_applied_has_nothing_pending() {
        assert_eq!(
            compare(&[1, 2, 3], &[1, 2, 3], None),
            SchemaState::Known { at: 3, pending: 0 }
        );
    }

    #[test]
    fn an_older_schema_counts_what_is_pending() {
        assert_eq!(
            compare(&[1, 2], &[1, 2, 3, 4], None),
            SchemaState::Known { at: 2, pending: 2 }
        );
    }

    #[test]
    fn a_version_beyond_the_newest_known_is_newer() {
        assert_eq!(
            compare(&[1, 2, 3, 80], &[1, 2, 3], None),
            SchemaState::Newer { at: 80, known: 3 }
        );
    }

    #[test]
    fn newer_but_additive_is_compatible_and_a_breaking_one_is_not() {
        // The database says binaries knowing 3 may run: this one knows 3.
        assert_eq!(
            compare(&[1, 2, 3, 80], &[1, 2, 3], Some(3)),
            SchemaState::Compatible { at: 80, known: 3 }
        );
        // Migration 80 raised it to 80: this binary is too old.
        assert_eq!(
            compare(&[1, 2, 3, 80], &[1, 2, 3], Some(80)),
            SchemaState::Newer { at: 80, known: 3 }
        );
        // A migration of this binary's the database never got: not older.
        assert_eq!(
            compare(&[1, 3, 80], &[1, 2, 3], Some(1)),
            SchemaState::Newer { at: 80, known: 3 }
        );
    }

    #[test]
    fn the_embedded_versions_are_the_migration_files() {
        let known = known_versions();
        assert!(known.contains(&1), "{known:?}");
        assert!(known.windows(2).all(|w| w[0] < w[1]), "{known:?}");
    }
}
