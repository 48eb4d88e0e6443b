//! What a statement on the management database fails with.

/// What a store function returns: most fail with a [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A management database operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL does not give connect options (never the URL).
    #[error("cannot connect to the management database: {0}")]
    Connect(#[source] crate::tls::TlsError),
    /// The server did not answer in time.
    #[error("cannot connect to the management database: timed out after {} s", .0.as_secs())]
    ConnectTimeout(std::time::Duration),
    /// Connecting failed: `message` is the driver's error with the URL's
    /// secrets masked, what is printed; `source` is kept for inspection.
    #[error("cannot connect to the management database: {message}")]
    Refused {
        /// The error as printed, scrubbed.
        message: String,
        /// The driver's error (may contain the URL: never print it).
        #[source]
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("management database: {0}")]
    Db(#[source] sqlx::Error),
    /// A migration failed.
    #[error("migrating the management database: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// Commands that only read need `cpi migrate` first.
    #[error(
        "the management database has no cpi tables yet: run `cpi migrate` (or `cpi apply`) first"
    )]
    NotMigrated,
    /// The database was migrated by a newer cpi; this one stops before
    /// touching anything.
    #[error(
        "the management database is at schema {at}, newer than this cpi ({known}): upgrade cpi"
    )]
    SchemaNewer {
        /// The newest migration applied to the database.
        at: i64,
        /// The newest migration this binary embeds.
        known: i64,
    },
    /// The database is at an older schema than this binary: only the
    /// daemon or `cpi migrate` upgrade it.
    #[error(
        "the management database is at schema {at}, older than this cpi ({pending} migrations pending): run `cpi migrate` first (`cpi migrate --dry-run` lists them)"
    )]
    SchemaOlder {
        /// The newest migration applied to the database.
        at: i64,
        /// How many of this binary's migrations are not applied.
        pending: usize,
    },
    /// A stored URL does not decrypt with the key file given (or none was).
    #[error("connection {name:?}: {source}")]
    Sealed {
        /// The connection.
        name: String,
        /// Why.
        #[source]
        source: crate::crypto::CryptoError,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}
