//! One integration-test binary; modules by intent.

mod api;
mod ci;
mod console;
mod daemon;
mod daemon_inprocess;
mod deploy_kit;
mod embedded;
mod encryption;
mod exit_codes;
mod export;
mod import;
mod import_cli;
mod import_support;
mod layout;
mod legacy;
mod quickstart;
mod reconcile;
mod schema;
mod secrets;
mod support;
mod tls;
