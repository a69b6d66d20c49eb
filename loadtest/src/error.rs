//! The load generator's errors: what stops a run before or while it starts.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, target, body file or SLO expression the user gave is wrong.
    #[error("{0}")]
    Usage(String),
    /// Preparing the run failed: metadata could not be fetched, a body could not be built.
    #[error("{0}")]
    Setup(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage(message.into())
    }
}
