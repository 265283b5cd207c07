//! The crate's error type.

use std::fmt;
use std::net::SocketAddr;

/// Errors returned by the coordinator and its registry.
#[derive(Debug)]
pub enum Error {
    /// A request field failed validation; `value` is already shortened for display.
    InvalidArgument {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// A new worker was rejected because the registry is at `max_workers`.
    RegistryFull { max_workers: usize },
    /// The server could not listen on the configured address.
    Bind { address: String, cause: String },
    /// The gRPC runtime failed outside of a request.
    Grpc(grpcio::Error),
    /// A configuration value is out of range.
    Config(String),
    /// The coordinator is stopping or not started, so it takes no new watch or wait.
    NotServing,
    /// `start()` was called on a coordinator that is already serving.
    AlreadyStarted { address: SocketAddr },
}

impl Error {
    /// Builds an `InvalidArgument` error, shortening the offending value.
    pub fn invalid(field: &'static str, value: &str, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field,
            value: shorten(value),
            reason: reason.into(),
        }
    }
}

/// Maximum number of characters of an offending value quoted in an error.
const QUOTED_VALUE_CHARS: usize = 64;

/// Returns `value` cut to `QUOTED_VALUE_CHARS` characters, with the
/// original byte length appended when it was cut.
pub fn shorten(value: &str) -> String {
    if value.chars().count() <= QUOTED_VALUE_CHARS {
        return value.to_string();
    }
    let head: String = value.chars().take(QUOTED_VALUE_CHARS).collect();
    format!("{head}... ({} bytes)", value.len())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument {
                field,
                value,
                reason,
            } => write!(f, "invalid {field} {value:?}: {reason}"),
            Error::RegistryFull { max_workers } => write!(
                f,
                "registry is full ({max_workers} workers); raise --max-workers or deregister idle workers"
            ),
            Error::Bind { address, cause } => write!(f, "failed to listen on {address}: {cause}"),
            Error::Grpc(error) => write!(f, "gRPC error: {error}"),
            Error::Config(message) => write!(f, "invalid configuration: {message}"),
            Error::NotServing => write!(
                f,
                "the coordinator is stopping; retry once it serves again"
            ),
            Error::AlreadyStarted { address } => {
                write!(f, "the coordinator is already serving on {address}")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<grpcio::Error> for Error {
    fn from(error: grpcio::Error) -> Error {
        Error::Grpc(error)
    }
}
