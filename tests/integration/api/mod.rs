//! The HTTP API over real HTTP against a real database: each test starts
//! `api::serve` on 127.0.0.1:0 with its own fresh database.

mod command;
mod connections;
mod jobs;
mod openapi;
mod projects;
mod secrets;
pub(crate) mod support;
mod system;
