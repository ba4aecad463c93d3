//! One error type for the data crate: a one-line message that names the file (and line) at fault.

/// A data error; its message is one line, names the offending file, and says how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DataError(pub String);

/// Result with [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

/// Builds an `Err(DataError)` from a message.
pub fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(DataError(message.into()))
}

/// Adds "what was being done to which file" to lower-level errors.
pub trait Context<T> {
    /// Prefixes the error with `what` (e.g. the file path).
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| DataError(format!("{}: {}", what(), one_line(&e.to_string()))))
    }
}

/// Collapses a multi-line message into one line.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
