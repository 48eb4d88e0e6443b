//! One integration-test binary; modules by intent.

mod api;
mod ci;
mod common;
mod daemon;
mod daemon_inprocess;
mod embedded;
mod exit_codes;
mod export;
mod fuzz;
mod hostile;
mod import;
mod import_cli;
pub(crate) mod import_support;
mod legacy;
mod quickstart;
mod reconcile;
mod schema;
mod secrets;
mod support;
