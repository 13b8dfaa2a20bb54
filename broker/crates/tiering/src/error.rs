//! The crate's error type.

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in tiered storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store URL or its options are unusable.
    #[error("invalid object store configuration: {0}")]
    Config(String),

    /// The object store refused or failed a request.
    #[error("object store error during {op} on {key}: {source}")]
    Store {
        /// What was being done ("put", "get", "list", ...).
        op: &'static str,
        /// The object key.
        key: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },

    /// A conditional manifest write lost a race (another writer committed first).
    #[error("manifest {key} was changed by another writer")]
    ManifestConflict {
        /// The manifest key.
        key: String,
    },

    /// A newer leader epoch owns the manifest: this writer is stale and must stop.
    #[error("manifest {key} is owned by leader epoch {owner}, writer has {ours}")]
    Fenced {
        /// The manifest key.
        key: String,
        /// Epoch recorded in the manifest.
        owner: i32,
        /// Epoch of this writer.
        ours: i32,
    },

    /// An object or manifest exists but its bytes do not check out.
    #[error("corrupt remote object {key}: {reason}")]
    Corrupt {
        /// The object key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A local file (segment or cache chunk) could not be read or written.
    #[error("i/o error during {op} on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn store(op: &'static str, key: &object_store::path::Path) -> impl FnOnce(object_store::Error) -> Error {
        let key = key.to_string();
        move |source| Error::Store { op, key, source }
    }

    pub(crate) fn io(op: &'static str, path: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_string();
        move |source| Error::Io { op, path, source }
    }

    pub(crate) fn corrupt(key: impl std::fmt::Display, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// True if the object (or manifest) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }
}
