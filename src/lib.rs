//! cpi puts CSV imports into PostgreSQL under git.
//!
//! # Layout
//! From the top down; a module imports only modules below it, and a module
//! inside a package names its siblings through `super::`, never its parent
//! (`tests/integration/layout.rs`; `docs/layout.md` maps DESIGN.md to modules).
//! - [`cli`]: the command line: parsing, the global options and management pool, one module per command family.
//! - [`key_file`]: key rotation as a procedure: the edits of a key file (add, promote, retire) and the rules that say when each step and `cpi rekey` are safe, given the running processes (pure).
//! - [`fuzzing`]: one input → one check, for the fuzz targets and the in-tree random harness.
//! - [`daemon`]: `cpi run`'s daemon: `run(settings, pool, listener, shutdown)` wires the inbox scanner, the import workers, the reconcile loop, file moves, `--inbox-root` confinement, the file-system watcher, retention, the API and shutdown.
//! - [`api`]: the HTTP API (`app`, `serve`), its auth and errors.
//! - [`console`]: the operator console's embedded web assets, served at `/` with the API.
//! - [`controls`]: the operator's controls over a job's file: a retry puts a failed file back through its inbox, a replay a processed one; a retried file is set aside as a worker would.
//! - [`inbox`]: inbox folders: candidates, readiness (settle), moving a file into a folder, its error report.
//! - [`metrics`]: `Health` (shared with the daemon) and the Prometheus text of `/metrics`.
//! - [`freshness`]: how long since each watched table's last imported file, its state (fresh, warn, error), and the changes the daemon records with their events.
//! - [`import`]: one CSV file into its target table: COPY, modes, exactly-once ledger.
//! - [`embedded`]: the private PostgreSQL under the state dir when no management URL is given.
//! - [`apply`]: runs a plan in one transaction under the reconcile lock.
//! - [`export`]: `cpi export`'s rows → manifests + secret files (pure); the command is in [`cli`], writing by [`output`].
//! - [`legacy`]: `cpi convert-legacy`, `connection.env_var` configs → manifests (pure).
//! - [`output`]: writing generated manifests and 0600 secret files.
//! - [`schema`]: `cpi schema`, the manifests' JSON Schema generated from the loader's types.
//! - [`render`]: a plan as text (unified diffs) or JSON, secrets redacted.
//! - [`notify`]: notifications: which events an Alert takes, how they group into messages under `max_per_hour`, what a message says, HMAC signatures (pure), and sending through a Provider (webhook, Slack, mail).
//! - [`store`]: the management database: connect, migrate, and every statement on the `cpi_*` tables, one module per table family (connections, projects, jobs, queue, pauses, running processes, reconcile runs, events, notification deliveries, the simple kinds' objects, statistics, retention).
//! - [`plan`]: `plan(desired, observed) -> Plan`, the pure diff of manifests and rows.
//! - [`manifest`]: load and validate a manifests folder into the desired state (pure but for reading files).
//! - [`rules`]: the name, URL, legacy and `--inbox-root` rules shared by manifests, export, the API, the daemon and imports.
//! - [`location`]: where a file is (`FileRef`: a local path or an object), decoded once from a job; its processed/failed destinations.
//! - [`config`]: a project's config and the import options for one file (pure).
//! - [`object_storage`]: object-storage inboxes: `s3://` addresses (pure), list, stream, copy, put, delete (AWS SDK).
//! - [`retry`]: the one backoff formula of every retry loop.
//! - [`tls`]: database URLs with libpq's TLS parameters turned into connect options; clear TLS errors.
//! - [`crypto`]: encryption at rest of stored URLs (AES-256-GCM envelopes, key files, rotation).
//! - [`access`]: who may do what: roles, bindings of roles on projects to subjects, API tokens, and the one decision `allows` (pure).
//! - [`secret`]: the `Secret` type and redaction of URLs and messages.
//! - [`id_prefix`]: ids as people type them: a full UUID or a unique prefix of 6 or more hex digits, as a range of the key.

#![warn(missing_docs)]

pub mod access;
pub mod api;
pub mod apply;
pub mod cli;
pub mod config;
pub mod console;
pub mod controls;
pub mod crypto;
pub mod daemon;
pub mod embedded;
pub mod export;
pub mod freshness;
pub mod fuzzing;
pub mod id_prefix;
pub mod import;
pub mod inbox;
pub mod key_file;
pub mod legacy;
pub mod location;
pub mod manifest;
pub mod metrics;
pub mod notify;
pub mod object_storage;
pub mod output;
pub mod plan;
pub mod render;
pub mod retry;
pub mod rules;
pub mod schema;
pub mod secret;
pub mod store;
pub mod tls;
