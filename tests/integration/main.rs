//! One integration-test binary; modules by intent.

mod api;
mod ci;
mod console;
mod contracts;
mod csv_real;
mod daemon;
mod daemon_inprocess;
mod daily_loop;
mod deploy_kit;
mod embedded;

mod encryption;
mod events;
mod exit_codes;
mod export;
mod fuzz;
mod heartbeat;
mod hostile;
mod hostile_files;
mod hostile_input;
mod import;
mod import_cli;
mod layout;
mod legacy;
mod packaging;
mod pg_input;
mod queue;
mod quickstart;
mod reconcile;
mod release;
mod s3;
mod schema;
mod schema_versions;
mod secrets;
mod support;
mod tls;
