//! What several routes' OpenAPI descriptions (utoipa `params(...)` and
//! `responses(...)`) share, written once instead of on each route.

#![allow(dead_code)] // described, never built: handlers answer through `ApiError`

use std::collections::BTreeMap;
use std::marker::PhantomData;

use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, Response, ResponseBuilder};

use super::error::ErrorBody;

/// A kind of row with routes under its own `{id}`.
pub(super) trait Addressed {
    /// How the `{id}` parameter is described: `Connection id`.
    const ID: &'static str;
    /// What a missing row is called: `connection`, as in `No such connection`.
    const NOUN: &'static str;
}

/// The `{id}` path parameter of a route about one `R`.
pub(super) struct IdParam<R>(PhantomData<R>);

impl<R: Addressed> utoipa::IntoParams for IdParam<R> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let uuid = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)));
        vec![ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .description(Some(R::ID))
            .required(Required::True)
            .schema(Some(uuid))
            .build()]
    }
}

/// The answers of a route about one `R` found by its id: 400 for a
/// malformed id, 404 for a missing row.
pub(super) struct IdErrors<R>(PhantomData<R>);

impl<R: Addressed> utoipa::IntoResponses for IdErrors<R> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            ("400".to_string(), error("Malformed id".to_string())),
            ("404".to_string(), error(format!("No such {}", R::NOUN))),
        ])
    }
}

/// A response with an [`ErrorBody`].
fn error(description: String) -> RefOr<Response> {
    let body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", body)
        .build()
        .into()
}

/// The answers every route behind the API token documents.
#[derive(utoipa::IntoResponses)]
pub(super) enum TokenErrors {
    #[response(status = 401, description = "Missing or wrong token")]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "No token configured")]
    Forbidden(ErrorBody),
}

/// The answers every route that reads a JSON body documents.
#[derive(utoipa::IntoResponses)]
pub(super) enum BodyErrors {
    #[response(status = 415, description = "The body is not sent as application/json")]
    UnsupportedMediaType(ErrorBody),
    #[response(status = 422, description = "Malformed body")]
    Unprocessable(ErrorBody),
}

/// The answer of a list paged by name (`/connections`, `/projects`) to a
/// query it cannot read.
#[derive(utoipa::IntoResponses)]
pub(super) enum PageErrors {
    #[response(status = 400, description = "Malformed query (limit over 1000, …)")]
    Malformed(ErrorBody),
}

/// The answer of a newest-first list (`/jobs`, `/reconcile/runs`) to a
/// query it cannot read.
#[derive(utoipa::IntoResponses)]
pub(super) enum WindowErrors {
    #[response(
        status = 400,
        description = "Malformed query (unknown status, limit over 500, …)"
    )]
    Malformed(ErrorBody),
}
