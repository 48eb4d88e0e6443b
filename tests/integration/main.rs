//! One integration-test binary; modules by intent.

mod api;
mod ci;
mod common;
mod csv_real;
mod daemon;
mod daemon_inprocess;
mod embedded;
mod exit_codes;
mod export;
mod import;
mod import_cli;
mod import_support;
mod legacy;
mod pg_input;
mod quickstart;
mod reconcile;
mod schema;
mod secrets;
mod support;
