//! cpi puts CSV imports into PostgreSQL under git.
//!
//! # Layout
//! - [`manifest`]: load and validate a manifests folder into the desired state (pure but for reading files).
//! - [`config`]: a project's config and the import options for one file (pure).
//! - [`plan`]: `plan(desired, observed) -> Plan`, the pure diff of manifests and rows.
//! - [`render`]: a plan as text (unified diffs) or JSON, secrets redacted.
//! - [`store`]: the `cpi_*` management tables (connect, migrate, read).
//! - [`apply`]: runs a plan in one transaction under the reconcile lock.
//! - [`secret`]: the `Secret` type and redaction of URLs and messages.
//! - [`embedded`]: the private PostgreSQL under the state dir when no management URL is given.
//! - [`export`]: `cpi export`, rows → manifests + secret files (pure), written by [`output`].
//! - [`legacy`]: `cpi convert-legacy`, `connection.env_var` configs → manifests (pure).
//! - [`output`]: writing generated manifests and 0600 secret files.
//! - [`schema`]: `cpi schema`, the manifests' JSON Schema generated from the loader's types.
//! - [`cli`]: the command line.

pub mod apply;
pub mod cli;
pub mod config;
pub mod embedded;
pub mod export;
pub mod legacy;
pub mod manifest;
pub mod output;
pub mod plan;
pub mod render;
pub mod schema;
pub mod secret;
pub mod store;
