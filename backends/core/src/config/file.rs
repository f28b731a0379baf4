//! The file backend's configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration;
use crate::config_error::ConfigError;

/// The file backend: `<dir>/<election>.lock`, locked with `flock`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FileConfig {
    /// Where the lock, token and leader files live. Default: [`default_file_dir`] (`/run/elect`
    /// for root, `$XDG_RUNTIME_DIR/elect` for other users).
    #[serde(default = "default_file_dir")]
    pub dir: PathBuf,
    /// How long a leader may take to stop its work once its lock file was deleted: a
    /// successor waits for the old term that long at most. `elect run` sets it to its
    /// `--grace`; the file backend's default otherwise.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub stop_grace: Option<Duration>,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            stop_grace: None,
            dir: default_file_dir(),
        }
    }
}

/// The default lock directory: private to the running user, never a shared `/tmp/elect`
/// that another user could create first. `/run/elect` for root, `$XDG_RUNTIME_DIR/elect`
/// for a user with a session, else `$TMPDIR/elect-<uid>` (which the file backend refuses
/// if someone else made it).
pub fn default_file_dir() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/elect");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(runtime) if runtime.is_absolute() => runtime.join("elect"),
        _ => std::env::temp_dir().join(format!("elect-{uid}")),
    }
}

impl FileConfig {
    /// Lock files in `dir`, the default stop grace.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        FileConfig {
            dir: dir.into(),
            stop_grace: None,
        }
    }

    /// Checks every field, as the parsers do: library constructors call it too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dir.as_os_str().is_empty() {
            return Err(ConfigError::new(
                "file.dir",
                "",
                "the lock directory must not be empty",
            ));
        }
        Ok(())
    }
}
