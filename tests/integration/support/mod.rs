//! Shared test support, one place for every module: a fresh database per
//! test ([`db`]), the real `cpi` binary ([`bin`]), waits that fail with what
//! they waited for ([`wait`]), and temp folders and files ([`fs`]).
#![allow(dead_code)] // not every test module uses every helper

pub mod bin;
pub mod db;
pub mod fs;
pub mod wait;

pub use bin::{cpi, cpi_command, free_port, Cpi, Run};
pub use db::{admin_url, TestDb};
pub use fs::write;
pub mod tls;
