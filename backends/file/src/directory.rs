//! The lock directory is trusted only if no one but its user and root can change it.
//!
//! Whoever can write to the directory (or rename it, or any directory above it) can put a
//! symlink where `elect` writes its lock, token or leader record, and make a root `elect`
//! overwrite any file. So before each use, every component of the directory's path is
//! checked: a directory (a symlink is followed only if its owner is trusted, and its target
//! is checked the same way), owned by the running user or root; the lock directory itself
//! not writable by group or others; those above it either not writable by group or others,
//! or sticky like `/tmp` (where others can add entries but not rename ours). Missing
//! directories are created with mode 0700.
//!
//! With the path trusted, a file in it can only have been put there by us or root; the files
//! are still opened without following a link (see [`crate::layout`]).

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use elect_core::Error;

use crate::error::{io_error, FileError, BACKEND};

/// Mode of the directories `elect` creates.
const DIR_MODE: u32 = 0o700;

/// Creates `dir` (mode 0700, with any missing parents) and checks that it can be trusted.
pub(crate) fn prepare(dir: &Path) -> Result<(), Error> {
    walk(&absolute(dir)?, true, true)
}

/// Checks that `dir` can be trusted; false if it does not exist (nothing to read in it).
pub(crate) fn check_existing(dir: &Path) -> Result<bool, Error> {
    match walk(&absolute(dir)?, false, true) {
        Err(Error::Unusable { source, .. })
            if source
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::NotFound) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
        Ok(()) => Ok(true),
    }
}

/// Creates a subdirectory `dir` of a checked directory (mode 0700) if it is missing.
pub(crate) fn create_sub(dir: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(not_a_directory(dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => make_dir(dir),
        Err(e) => Err(io_error("stat", dir, e)),
    }
}

fn absolute(dir: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(dir).map_err(|e| io_error("resolve", dir, e))
}

/// Checks each component of the absolute `path` from the root, creating missing ones if
/// `create`. `strict_last`: the last component may not be writable by others even if sticky.
fn walk(path: &Path, create: bool, strict_last: bool) -> Result<(), Error> {
    let names: Vec<Component<'_>> = path.components().collect();
    let mut at = PathBuf::from("/");
    for (i, component) in names.iter().enumerate() {
        let name = match component {
            Component::Normal(name) => name,
            Component::ParentDir => {
                at.pop();
                continue;
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
        };
        let last = i + 1 == names.len();
        let mut next = at.join(name);
        let mut meta = match fs::symlink_metadata(&next) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                make_dir(&next)?;
                fs::symlink_metadata(&next).map_err(|e| io_error("stat", &next, e))?
            }
            Err(e) => return Err(unusable("stat", &next, e)),
        };
        if meta.file_type().is_symlink() {
            // A link in a sticky directory may be another user's.
            trusted_owner(&next, &meta)?;
            let target = fs::canonicalize(&next).map_err(|e| unusable("resolve", &next, e))?;
            walk(&target, false, last && strict_last)?;
            next = target;
            meta = fs::metadata(&next).map_err(|e| io_error("stat", &next, e))?;
        }
        if !meta.is_dir() {
            return Err(not_a_directory(&next));
        }
        trusted_owner(&next, &meta)?;
        let writable_by_others = meta.mode() & 0o022 != 0;
        let sticky = meta.mode() & 0o1000 != 0;
        if writable_by_others && (last && strict_last || !sticky) {
            return Err(untrusted(
                &next,
                format!(
                    "it is writable by {} (mode {:o}): others could replace the lock files; \
                     make it private (chmod 0700) or choose another directory",
                    if meta.mode() & 0o002 != 0 {
                        "others"
                    } else {
                        "its group"
                    },
                    meta.mode() & 0o7777
                ),
            ));
        }
        at = next;
    }
    Ok(())
}

fn make_dir(dir: &Path) -> Result<(), Error> {
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {
            // Exactly 0700, whatever the umask.
            fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
                .map_err(|e| unusable("chmod", dir, e))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        // A missing parent here means the file system refused it (e.g. under /proc).
        Err(e) => Err(unusable("create directory", dir, e)),
    }
}

/// The owner of `path` must be us or root.
fn trusted_owner(path: &Path, meta: &fs::Metadata) -> Result<(), Error> {
    let us = nix::unistd::geteuid().as_raw();
    if meta.uid() == us || meta.uid() == 0 {
        return Ok(());
    }
    Err(untrusted(
        path,
        format!(
            "it is owned by uid {}, neither this user (uid {us}) nor root: its owner could \
             replace the lock files",
            meta.uid()
        ),
    ))
}

fn untrusted(path: &Path, problem: String) -> Error {
    let path = path.to_path_buf();
    Error::PermissionDenied {
        backend: BACKEND,
        operation: format!("use lock directory {}", path.display()),
        source: Box::new(FileError::UntrustedDirectory { path, problem }),
    }
}

fn not_a_directory(path: &Path) -> Error {
    unusable(
        "use lock directory",
        path,
        io::Error::from_raw_os_error(nix::libc::ENOTDIR),
    )
}

/// An error that trying again will not mend (permission denied stays its own kind).
fn unusable(operation: &str, path: &Path, error: io::Error) -> Error {
    if error.kind() == io::ErrorKind::PermissionDenied {
        return io_error(operation, path, error);
    }
    Error::Unusable {
        backend: BACKEND,
        operation: format!("{operation} {}", path.display()),
        source: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new directory `name` in `base`, with permission bits `mode`.
    fn dir_with_mode(base: &Path, name: &str, mode: u32) -> std::path::PathBuf {
        let dir = base.join(name);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, Permissions::from_mode(mode)).unwrap();
        dir
    }

    fn problem(error: &Error) -> String {
        std::error::Error::source(error)
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn missing_directories_are_created_private_whatever_the_umask() {
        // The umask is the process's: changed here, it would leak into the
        // tests running beside this one (their temporary directories came out
        // 0777 and were refused). So the test runs alone in a child process.
        const CHILD: &str = "ELECT_FILE_UMASK_TEST_CHILD";
        let name = "directory::tests::missing_directories_are_created_private_whatever_the_umask";
        if std::env::var_os(CHILD).is_none() {
            let child = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--test-threads=1"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&child.stdout);
            assert!(
                child.status.success() && stdout.contains("1 passed"),
                "the test in a child process: {}\n{stdout}{}",
                child.status,
                String::from_utf8_lossy(&child.stderr)
            );
            return;
        }
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b/elect");
        nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        prepare(&dir).unwrap();
        for path in [base.path().join("a"), base.path().join("a/b"), dir] {
            let mode = fs::metadata(&path).unwrap().mode() & 0o7777;
            assert_eq!(mode, 0o700, "{}", path.display());
        }
    }

    #[test]
    fn a_directory_writable_by_others_is_refused_naming_it() {
        let base = tempfile::tempdir().unwrap();
        let dir = dir_with_mode(base.path(), "shared", 0o1777);
        let error = prepare(&dir).unwrap_err();
        assert!(matches!(error, Error::PermissionDenied { .. }), "{error:?}");
        assert!(
            problem(&error).contains(&dir.display().to_string()),
            "{error}"
        );
        assert!(problem(&error).contains("writable by others"), "{error}");
        // Below a sticky directory, a private one is fine (the case of /tmp).
        prepare(&dir.join("mine")).unwrap();
        // Group-writable, not sticky, above the lock directory: refused.
        fs::set_permissions(&dir, Permissions::from_mode(0o770)).unwrap();
        let error = prepare(&dir.join("mine")).unwrap_err();
        assert!(problem(&error).contains("its group"), "{error}");
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_unusable_not_transient() {
        let base = tempfile::tempdir().unwrap();
        let file = base.path().join("file");
        fs::write(&file, "").unwrap();
        for dir in [file.clone(), file.join("elect")] {
            let error = prepare(&dir).unwrap_err();
            assert!(matches!(error, Error::Unusable { .. }), "{error:?}");
            assert!(!error.is_transient());
        }
        let error = prepare(Path::new("/proc/elect-cannot-be-here")).unwrap_err();
        assert!(matches!(error, Error::Unusable { .. }), "{error:?}");
    }

    #[test]
    fn a_symlinked_directory_is_followed_and_its_target_checked() {
        let base = tempfile::tempdir().unwrap();
        let target = dir_with_mode(base.path(), "real", 0o700);
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        prepare(&link).unwrap();
        fs::set_permissions(&target, Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            prepare(&link).unwrap_err(),
            Error::PermissionDenied { .. }
        ));
    }

    #[test]
    fn a_missing_directory_is_no_error_to_a_reader() {
        let base = tempfile::tempdir().unwrap();
        assert!(!check_existing(&base.path().join("nope")).unwrap());
        assert!(check_existing(base.path()).unwrap());
    }
}
