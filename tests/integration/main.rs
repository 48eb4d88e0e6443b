//! One integration-test binary; modules by intent.

mod api;
mod common;
mod daemon;
mod exit_codes;
mod reconcile;
mod secrets;
