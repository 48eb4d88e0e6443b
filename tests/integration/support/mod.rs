//! Shared test support, one place for every module: a fresh database per
//! test ([`db`]), the real `cpi` binary ([`bin`]), waits that fail with what
//! they waited for ([`wait`]), temp folders and files ([`fs`]), a project
//! ready for imports ([`import`]), manifests ([`manifests`]), a local S3
//! server ([`s3`]), the daemon as a process ([`daemon`]), the API served
//! in-process ([`api`]) and a headless browser ([`console`]).
#![allow(dead_code)] // not every test module uses every helper

pub mod api;
pub mod bin;
pub mod console;
pub mod daemon;
pub mod db;
pub mod fs;
pub mod import;
pub mod manifests;
pub mod oidc;
pub mod polluter;
pub mod receiver;
pub mod s3;
pub mod wait;

pub use bin::{cpi, cpi_command, free_port, Cpi, Run};
pub use db::{admin_url, TestDb};
pub use fs::write;
pub mod tls;
