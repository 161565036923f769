//! The store's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in [`Store`](super::Store).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store directory could not be created.
    #[error("cannot create the store directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of the store could not be opened outside SQLite.
    #[error("cannot open {path}: {source}")]
    OpenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused an operation (I/O error, full disk, a corrupt file, a writer holding the
    /// lock longer than the busy timeout, a write through a reader connection, ...).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A definition or event could not be encoded, or a stored one could not be decoded.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// The database was written by a build with a newer schema (`found`) than this one knows
    /// (`supported`), or a reader opened a database its writer has not migrated yet.
    #[error("database schema version {found} does not match this build's {supported}")]
    SchemaVersion { found: i64, supported: i64 },
    /// SQLite would not switch the database to WAL mode (e.g. a network filesystem).
    #[error("the database refused WAL journal mode (it reports {0:?}); use a local filesystem")]
    WalUnavailable(String),
    /// An insert collided with an existing row of the same tenant and id.
    #[error("{what} {id:?} already exists")]
    AlreadyExists { what: &'static str, id: String },
    /// A stored value that this build cannot interpret (e.g. an unknown shipment status).
    #[error("corrupt value in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    /// The operating system would not start a thread the store needed.
    #[error("cannot start the store's {0} thread")]
    Thread(&'static str),
}

impl StoreError {
    /// Maps a uniqueness violation of an insert to [`StoreError::AlreadyExists`].
    pub(super) fn conflict(err: rusqlite::Error, what: &'static str, id: &str) -> StoreError {
        match err.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::AlreadyExists {
                what,
                id: id.to_owned(),
            },
            _ => StoreError::Sqlite(err),
        }
    }
}
