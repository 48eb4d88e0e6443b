//! How handlers read a request (a JSON body, a UUID path segment, a query
//! string, a page) so that every malformed input is the API's JSON error,
//! and the field rules every body shares.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use super::error::ApiError;

/// `axum::Json`, answering a body it cannot read with the API's JSON error.
/// The body must be a JSON object (serde would read a struct from an array).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state).await?;
        if !value.is_object() {
            return Err(ApiError::Malformed {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: "the body must be a JSON object".into(),
            });
        }
        serde_json::from_value(value)
            .map(JsonBody)
            .map_err(|e| ApiError::Malformed {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!("Failed to deserialize the JSON body into the target type: {e}"),
            })
    }
}

/// A UUID path segment; a malformed one is a 400 with the API's JSON error.
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<Uuid>::from_request_parts(parts, state).await?;
        Ok(IdPath(id))
    }
}

/// `axum::extract::Query`, answering a query string it cannot read with the API's JSON error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);

/// Deserializes a field that is present (even as `null`) into `Some`, so
/// `Option<Option<T>>` tells "left out" (`None`) from "cleared" (`Some(None)`).
pub(super) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The longest description the API stores (names have the name rule's 255).
pub const MAX_DESCRIPTION: usize = 4096;

/// `limit`/`offset` of a list: at most [`MAX_PAGE`] rows, [`DEFAULT_PAGE`] by default.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// At most this many rows (default 100, at most 1000).
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<usize>,
    /// Rows skipped first (by name order).
    #[param(minimum = 0)]
    pub offset: Option<usize>,
}

/// A list's default page size.
pub const DEFAULT_PAGE: usize = 100;
/// A list's largest page.
pub const MAX_PAGE: usize = 1000;

impl Page {
    /// The rows of this page, or a 400 for a limit over [`MAX_PAGE`].
    pub fn slice<T>(&self, rows: Vec<T>) -> Result<Vec<T>, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if limit > MAX_PAGE {
            return Err(ApiError::invalid(format!(
                "limit: at most {MAX_PAGE}, got {limit}"
            )));
        }
        Ok(rows
            .into_iter()
            .skip(self.offset.unwrap_or(0))
            .take(limit)
            .collect())
    }
}

/// The page size of the newest-first lists (`/jobs`, `/reconcile/runs`) by default.
const DEFAULT_WINDOW: u32 = 50;
/// Their largest page.
const MAX_WINDOW: u32 = 500;

/// `limit` and `offset` of a newest-first list, checked: the list is paged
/// in PostgreSQL, whose `OFFSET` is bound as an `int4`.
pub(super) fn newest_first_window(
    limit: Option<u32>,
    offset: Option<u32>,
) -> Result<(u32, u32), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_WINDOW);
    if limit > MAX_WINDOW {
        return Err(ApiError::invalid(format!(
            "limit: at most {MAX_WINDOW}, got {limit}"
        )));
    }
    let offset = offset.unwrap_or(0);
    if offset > i32::MAX as u32 {
        return Err(ApiError::invalid(format!(
            "offset: at most {}, got {offset}",
            i32::MAX
        )));
    }
    Ok((limit, offset))
}

/// The problems of the fields every body may carry: the manifests' name
/// rule (so every row can be exported as a manifest) and a description
/// PostgreSQL can store (text cannot hold NUL).
pub(super) fn check_fields(
    kind: &str,
    name: Option<&str>,
    description: Option<&str>,
) -> Vec<String> {
    let name = name.and_then(|n| {
        crate::rules::check_name(n)
            .err()
            .map(|e| format!("name: a {kind} name {e}"))
    });
    let description = description.and_then(|d| {
        if d.contains('\0') {
            Some("description: must not contain NUL characters".to_string())
        } else if d.chars().count() > MAX_DESCRIPTION {
            Some(format!(
                "description: at most {MAX_DESCRIPTION} characters, got {}",
                d.chars().count()
            ))
        } else {
            None
        }
    });
    name.into_iter().chain(description).collect()
}
