//! Writes to rows no reconciler owns: lock one (404 when it is missing,
//! 409 when a manifest owns it), answer a create and delete one, for
//! connections and projects alike.

use std::future::Future;

use axum::http::{header, HeaderName, StatusCode};
use axum::Json;
use sqlx::PgPool;
use uuid::Uuid;

use super::error::ApiError;
use super::guard::ActionAudit;
use crate::store::{self, ConnectionRow, ProjectRow, StoreError};

/// What the write handlers of `/connections` and `/projects` share about
/// their rows: how to lock and delete one, and who owns it.
pub(super) trait Resource: Sized + Send {
    /// `connection` or `project`, for messages.
    const KIND: &'static str;
    /// The row's name, owner and manifest.
    fn ownership(&self) -> (&str, &Option<String>, &Option<String>);
    /// Locks the row for the rest of the transaction.
    fn lock(
        tx: &mut sqlx::PgConnection,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Self>, StoreError>> + Send;
    /// Deletes the row unless a reconciler owns it; `false` when it is gone.
    fn delete(
        tx: &mut sqlx::PgConnection,
        id: Uuid,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The two impls differ only in their kind and store functions.
macro_rules! resource {
    ($row:ty, $kind:literal, $lock:path, $delete:path) => {
        impl Resource for $row {
            const KIND: &'static str = $kind;
            fn ownership(&self) -> (&str, &Option<String>, &Option<String>) {
                (&self.name, &self.managed_by, &self.source)
            }
            fn lock(
                tx: &mut sqlx::PgConnection,
                id: Uuid,
            ) -> impl Future<Output = Result<Option<Self>, StoreError>> + Send {
                $lock(tx, id)
            }
            fn delete(
                tx: &mut sqlx::PgConnection,
                id: Uuid,
            ) -> impl Future<Output = Result<bool, StoreError>> + Send {
                $delete(tx, id)
            }
        }
    };
}

resource!(
    ConnectionRow,
    "connection",
    store::lock_connection,
    store::delete_unmanaged_connection
);
resource!(
    ProjectRow,
    "project",
    store::lock_project,
    store::delete_unmanaged_project
);

/// Locks row `id` for a write: 404 when it does not exist, 409 when a
/// reconciler owns it (its manifest is the source of truth).
pub(super) async fn lock_unmanaged<R: Resource>(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
) -> Result<R, ApiError> {
    let row = R::lock(tx, id)
        .await?
        .ok_or(ApiError::NotFound { kind: R::KIND, id })?;
    let (name, managed_by, source) = row.ownership();
    if let Some(owner) = managed_by {
        return Err(ApiError::Managed {
            kind: R::KIND,
            name: name.to_string(),
            managed_by: owner.clone(),
            manifest: source.clone(),
        });
    }
    Ok(row)
}

/// The answer to a `POST` that inserted row `id` (named `name`) in `tx`:
/// its audit row, on `kind:name`, committed with it, then 201 with the
/// row's `Location`.
pub(super) async fn created<B>(
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
    audit: &ActionAudit,
    kind: &str,
    name: &str,
    id: Uuid,
    body: B,
) -> Result<(StatusCode, [(HeaderName, String); 1], Json<B>), ApiError> {
    let target = format!("{kind}:{name}");
    audit.commit(tx, StatusCode::CREATED, Some(target)).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/{kind}s/{id}"))],
        Json(body),
    ))
}

/// `DELETE` of an unmanaged row and its audit row in one transaction; the
/// deleted row back.
pub(super) async fn delete_unmanaged<R: Resource>(
    pool: &PgPool,
    id: Uuid,
    audit: &ActionAudit,
) -> Result<R, ApiError> {
    let mut tx = pool.begin().await?;
    let current = lock_unmanaged::<R>(&mut tx, id).await?;
    if !R::delete(&mut tx, id).await? {
        return Err(ApiError::NotFound { kind: R::KIND, id });
    }
    audit.commit(tx, StatusCode::NO_CONTENT, None).await?;
    Ok(current)
}
