//! The operator's one error type.

/// Why a reconcile failed (the controller retries with back-off).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    #[error("admin api {address}: {status}")]
    Admin {
        address: String,
        status: Box<tonic::Status>,
    },
    #[error("cannot reach admin api {address}: {message}")]
    AdminUnreachable { address: String, message: String },
    #[error("{kind} {name} has no namespace")]
    NoNamespace { kind: &'static str, name: String },
    #[error("serialising {what}: {source}")]
    Serialize {
        what: &'static str,
        source: serde_json::Error,
    },
}

impl Error {
    /// A short, low-cardinality label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeApi",
            Error::Admin { .. } => "AdminApi",
            Error::AdminUnreachable { .. } => "AdminUnreachable",
            Error::NoNamespace { .. } => "NoNamespace",
            Error::Serialize { .. } => "Serialize",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
