//! cpi puts CSV imports into PostgreSQL under git.
//!
//! # Layout
//! From the top down; a module imports only modules below it.
//! - [`cli`]: the command line: parsing, the global options and management pool, one module per command family.
//! - [`fuzzing`]: one input → one check, for the fuzz targets and the in-tree random harness.
//! - [`daemon`]: `cpi run`'s daemon: `run(settings, pool, listener, shutdown)` wires the loops, workers, API and shutdown.
//! - [`api`]: the HTTP API (`app`, `serve`), its auth and errors.
//! - [`console`]: the operator console's embedded web assets, served at `/` with the API.
//! - [`prune`]: history retention (`cpi prune`, `cpi run --retention`).
//! - [`reconcile`]: the daemon's reconcile loop (watch, debounce, interval, retry).
//! - [`moves`]: a file's move out of the inbox after its job, retried with backoff until done.
//! - [`confine`]: the daemon's side of `--inbox-root`: which inboxes it watches, where it may move files.
//! - [`inbox`]: inbox files: candidates, readiness (settle), processed/failed moves.
//! - [`queue`]: the job queue: enqueue once, claim with a lease, take over dead workers' jobs.
//! - [`watch`]: file-system events (inotify or polling) as hints.
//! - [`metrics`]: `Health` (shared with the daemon) and the Prometheus text of `/metrics`.
//! - [`import`]: one CSV file into its target table: COPY, modes, exactly-once ledger.
//! - [`jobs`]: the `cpi_import_jobs` rows (create, start, finish, list, retry).
//! - [`embedded`]: the private PostgreSQL under the state dir when no management URL is given.
//! - [`apply`]: runs a plan in one transaction under the reconcile lock.
//! - [`export`]: `cpi export`'s rows → manifests + secret files (pure); the command is in [`cli`], writing by [`output`].
//! - [`legacy`]: `cpi convert-legacy`, `connection.env_var` configs → manifests (pure).
//! - [`output`]: writing generated manifests and 0600 secret files.
//! - [`schema`]: `cpi schema`, the manifests' JSON Schema generated from the loader's types.
//! - [`render`]: a plan as text (unified diffs) or JSON, secrets redacted.
//! - [`store`]: the `cpi_*` management tables (connect, migrate, read).
//! - [`plan`]: `plan(desired, observed) -> Plan`, the pure diff of manifests and rows.
//! - [`manifest`]: load and validate a manifests folder into the desired state (pure but for reading files).
//! - [`rules`]: the name, URL and legacy rules shared by manifests, export, the API and imports.
//! - [`config`]: a project's config and the import options for one file (pure).
//! - [`storage`]: object-storage inboxes: `s3://` locations (pure), list, stream, copy, put, delete (AWS SDK).
//! - [`retry`]: the one backoff formula of every retry loop.
//! - [`tls`]: database URLs with libpq's TLS parameters turned into connect options; clear TLS errors.
//! - [`crypto`]: encryption at rest of stored URLs (AES-256-GCM envelopes, key files, rotation).
//! - [`secret`]: the `Secret` type and redaction of URLs and messages.

#![warn(missing_docs)]

pub mod api;
pub mod apply;
pub mod cli;
pub mod config;
pub mod confine;
pub mod console;
pub mod crypto;
pub mod daemon;
pub mod embedded;
pub mod export;
pub mod fuzzing;
pub mod import;
pub mod inbox;
pub mod jobs;
pub mod legacy;
pub mod manifest;
pub mod metrics;
pub mod moves;
pub mod output;
pub mod plan;
pub mod prune;
pub mod queue;
pub mod reconcile;
pub mod render;
pub mod retry;
pub mod rules;
pub mod schema;
pub mod secret;
pub mod storage;
pub mod store;
pub mod tls;
pub mod watch;
