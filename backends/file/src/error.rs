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
    /// The lock directory (or one above it) could be changed by someone other than this user
    /// and root, so its files cannot be trusted.
    #[error("{}: {problem}", path.display())]
    UntrustedDirectory {
        /// The directory refused.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

pub(crate) const BACKEND: &str = "file";

/// An I/O error on `path` as an `elect` error: permission denied as such; errors that may
/// pass (no space, interrupted, out of descriptors, an I/O error) as a backend failure, which
/// is retried; the rest (a name too long, a read-only file system, not a directory, …)
/// repeat on a local file system, so they are [`Error::Unusable`] and never retried.
pub(crate) fn io_error(operation: &str, path: &Path, error: io::Error) -> Error {
    let operation = format!("{operation} {}", path.display());
    if error.kind() == io::ErrorKind::PermissionDenied {
        return Error::PermissionDenied {
            backend: BACKEND,
            operation,
            source: error.into(),
        };
    }
    if may_pass(&error) {
        Error::backend(BACKEND, operation, error)
    } else {
        Error::Unusable {
            backend: BACKEND,
            operation,
            source: error.into(),
        }
    }
}

/// Errors of a local file system that trying again may mend. A file not found is one: an
/// operator may have deleted the directory between two of our calls.
fn may_pass(error: &io::Error) -> bool {
    use nix::errno::Errno;
    if matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    ) {
        return true;
    }
    let Some(code) = error.raw_os_error() else {
        return false;
    };
    matches!(
        Errno::from_raw(code),
        Errno::ENOSPC
            | Errno::EDQUOT
            | Errno::EIO
            | Errno::ENOMEM
            | Errno::EMFILE
            | Errno::ENFILE
            | Errno::EBUSY
            | Errno::ESTALE
            | Errno::ETIMEDOUT
            | Errno::ENOLCK
            | Errno::EDEADLK
            | Errno::EAGAIN
    )
}

/// A file of the election holds what `elect` never writes: trying again will not help.
pub(crate) fn corrupt(operation: String, error: FileError) -> Error {
    Error::Unusable {
        backend: BACKEND,
        operation,
        source: Box::new(error),
    }
}
