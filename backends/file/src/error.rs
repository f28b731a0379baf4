//! The file backend's own errors, kept as the `source` of an
//! [`elect_core::Error::Backend`]. Each carries the path it is about.

use std::io;
use std::path::{Path, PathBuf};

use elect_core::Error;

/// What can be wrong with the files of an election (beyond I/O errors, which keep their
/// `std::io::Error`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The token counter file holds something other than a number.
    #[error("{} holds no token counter: {text:?}", path.display())]
    BadCounter {
        /// The counter file, `<dir>/<election>.token`.
        path: PathBuf,
        /// What it holds (at most 64 characters of it).
        text: String,
        /// Why it is not a `u64`.
        #[source]
        source: std::num::ParseIntError,
    },
    /// The token counter cannot grow any more.
    #[error("{} is at the largest token, {}", path.display(), u64::MAX)]
    CounterOverflow {
        /// The counter file.
        path: PathBuf,
    },
    /// A JSON record of the election (leader or candidate) cannot be parsed.
    #[error("{} is not a valid record: {source}", path.display())]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
}

pub(crate) const BACKEND: &str = "file";

/// An I/O error on `path` as an `elect` error: permission denied as such, the rest as a
/// backend failure naming the operation and the path.
pub(crate) fn io_error(operation: &str, path: &Path, error: io::Error) -> Error {
    let operation = format!("{operation} {}", path.display());
    if error.kind() == io::ErrorKind::PermissionDenied {
        Error::PermissionDenied {
            backend: BACKEND,
            operation,
            source: error.into(),
        }
    } else {
        Error::backend(BACKEND, operation, error)
    }
}
