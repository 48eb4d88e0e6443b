//! One integration-test binary; modules by intent.

mod common;
mod exit_codes;
mod reconcile;
mod secrets;
