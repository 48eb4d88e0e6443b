//! The embedded default: when no management database is given, cpi runs a
//! private PostgreSQL under the state dir (`<state>/embedded/`), started
//! from the server binaries on PATH or under `/usr/lib/postgresql/*/bin`.
//!
//! - First use: `initdb` (superuser `cpi`, a generated password in
//!   `<state>/embedded/password`, mode 0600; scram on 127.0.0.1 only), then
//!   the databases `cpi` (management) and `quickstart` (a scratch target).
//! - Every use: reuse the data dir; if the server is already running (another
//!   cpi process uses it) connect to it, else `pg_ctl start`.
//! - Exit: the [`Embedded`] guard stops the server when the last cpi process
//!   using it lets go. Each user holds a shared lock on `users.lock`; a
//!   process that can take it exclusively is the last one. `start.lock`
//!   serializes start and stop, so no process attaches to a server that
//!   another is stopping.
//! - As root (PostgreSQL refuses to run as root) the server runs as the
//!   `postgres` system user, which owns the data dir.
//!
//! The host's part (binaries, the server user, lock files) is in `host`;
//! creating, starting and filling the cluster in `cluster`; the guard that
//! starts, joins and stops it in `server`; the failures in `error`.

mod cluster;
mod error;
mod host;
mod names;
mod server;

pub use error::EmbeddedError;
pub use host::{find_binaries, passwd_entry, pid_file_port};
pub use names::{DATABASE, FALLBACK_ROOT, SCRATCH_DATABASE, SYSTEM_USER, USER};
pub use server::Embedded;

/// The default port: 5432 with a 9 appended, so it never meets a system
/// PostgreSQL on 5432. Two state dirs in use at once need two ports
/// (`--embedded-port`).
pub const DEFAULT_PORT: u16 = 54329;

#[cfg(test)]
mod tests;
