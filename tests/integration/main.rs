//! One integration-test binary; modules by intent.

mod api;
mod common;
mod exit_codes;
