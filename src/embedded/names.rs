//! The names the embedded server is known by: its binaries and where they
//! are looked for, the users it runs as, its databases.

/// Server binaries, in this order: `$CPI_POSTGRES_BIN` (a folder; only
/// there when set), PATH, then the highest version under this root.
pub const FALLBACK_ROOT: &str = "/usr/lib/postgresql";
/// The server binaries cpi needs.
pub(super) const BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
/// The unprivileged user that runs the server when cpi runs as root.
pub const SYSTEM_USER: &str = "postgres";
/// The superuser of the embedded instance.
pub const USER: &str = "cpi";
/// The management database.
pub const DATABASE: &str = "cpi";
/// A scratch target database (the quickstart imports into it).
pub const SCRATCH_DATABASE: &str = "quickstart";
