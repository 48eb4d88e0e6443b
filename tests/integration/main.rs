//! One integration-test binary; modules by intent.

mod common;
mod daemon;
mod exit_codes;
mod reconcile;
mod secrets;
