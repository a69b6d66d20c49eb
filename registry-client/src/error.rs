//! What a registry call can fail with.

/// A failed call: refused by the registry (with its status and message), or
/// never answered.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry answered with an error status and `{"error": message}`.
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    /// The registry could not be reached or the connection broke.
    #[error("cannot reach the registry at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The registry answered something that is not the expected body.
    #[error("unexpected answer from the registry: {0}")]
    Decode(String),
    /// A local input file is missing, unreadable or malformed (an artifact
    /// to upload, a policy, training data): the caller's to fix.
    #[error("{0}")]
    Io(String),
    /// Refused here, before the registry was asked: what the command needs
    /// is not there (a revision to go back to).
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    /// The HTTP status of a refusal, `None` when the registry did not answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
}
