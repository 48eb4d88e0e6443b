//! One integration-test binary; modules by intent.

mod common;
mod exit_codes;
mod import;
mod import_cli;
mod import_support;
