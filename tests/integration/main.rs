//! One integration-test binary; modules by intent.

mod common;
mod exit_codes;
mod export;
mod legacy;
mod reconcile;
mod secrets;
