//! cpi puts CSV imports into PostgreSQL under git.
//!
//! # Layout
//! - [`manifest`]: load and validate a manifests folder into the desired state (pure but for reading files).
//! - [`config`]: a project's config and the import options for one file (pure).
//! - [`plan`]: `plan(desired, observed) -> Plan`, the pure diff of manifests and rows.
//! - [`render`]: a plan as text (unified diffs) or JSON, secrets redacted.
//! - [`store`]: the `cpi_*` management tables (connect, migrate, read).
//! - [`apply`]: runs a plan in one transaction under the reconcile lock.
//! - [`import`]: one CSV file into its target table: COPY, modes, exactly-once ledger.
//! - [`jobs`]: the `cpi_import_jobs` rows (create, start, finish, list, retry).
//! - [`reconcile`]: the daemon's reconcile loop (watch, debounce, interval, retry).
//! - [`retry`]: the one backoff formula of every retry loop.
//! - [`inbox`]: inbox files: candidates, readiness (settle), processed/failed moves.
//! - [`queue`]: the job queue: enqueue once, claim with a lease, take over dead workers' jobs.
//! - [`watch`]: file-system events (inotify or polling) as hints.
//! - [`daemon`]: `cpi run`, wiring the loops, workers and shutdown.
//! - [`secret`]: the `Secret` type and redaction of URLs and messages.
//! - [`api`]: the HTTP API (`app`, `serve`), its auth and errors, `cpi serve`.
//! - [`metrics`]: `Health` (shared with the daemon) and the Prometheus text of `/metrics`.
//! - [`embedded`]: the private PostgreSQL under the state dir when no management URL is given.
//! - [`export`]: `cpi export`, rows → manifests + secret files (pure), written by [`output`].
//! - [`legacy`]: `cpi convert-legacy`, `connection.env_var` configs → manifests (pure).
//! - [`output`]: writing generated manifests and 0600 secret files.
//! - [`schema`]: `cpi schema`, the manifests' JSON Schema generated from the loader's types.
//! - [`cli`]: the command line.

pub mod api;
pub mod apply;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod embedded;
pub mod export;
pub mod import;
pub mod inbox;
pub mod jobs;
pub mod legacy;
pub mod manifest;
pub mod metrics;
pub mod output;
pub mod plan;
pub mod queue;
pub mod reconcile;
pub mod render;
pub mod retry;
pub mod schema;
pub mod secret;
pub mod store;
pub mod watch;
