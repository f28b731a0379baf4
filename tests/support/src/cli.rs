//! What the `elect` CLI's own tests (the root `tests/*.rs`) share: the binary on a private
//! lock directory, checks of its exit and message, `sh -c` commands, the real clusters' URLs
//! at their shortest TTL, and one test per case of a scenario.
//!
//! This crate cannot depend on `elect` (elect depends on it), so the binary's path comes from
//! the caller (`env!("CARGO_BIN_EXE_elect")`).

use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;
use std::process::{Command, Output};

use crate::process::without_elect_env;

/// The `elect` binary `bin` on the file backend with lock directory `locks`, without the
/// caller's `ELECT_*` variables (a developer's own settings must not leak into a test).
pub fn elect_on_files(bin: impl AsRef<OsStr>, locks: &Path) -> Command {
    let mut command = Command::new(bin);
    without_elect_env(&mut command);
    command.env("ELECT_FILE_DIR", locks);
    command
}

/// Asserts that `text`, which `elect` printed, contains each of `names`; `what` says which
/// call printed it.
pub fn assert_names(what: &str, text: &str, names: &[&str]) {
    for name in names {
        assert!(text.contains(name), "{what}: no {name:?} in {text:?}");
    }
}

/// Asserts that `elect` exited with `code` and that its message (stderr) names each of
/// `names`; `what` says which call it was.
pub fn assert_exit(what: &str, out: &Output, code: i32, names: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}: {stderr}");
    assert_names(what, &stderr, names);
}

/// `sh -c script`, as a command line of any string type (`String`, `OsString`).
pub fn sh<T: From<&'static str> + From<String>>(script: String) -> Vec<T> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// Runs `scenario` to its end on a tokio runtime of two worker threads, as
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` would.
pub fn block_on<F: Future>(scenario: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(scenario)
}

/// One `#[test]` per row `name => call;`, each running its `call` (an async scenario through
/// [`block_on`]): one scenario with each case's arguments, as tests of their own.
#[macro_export]
macro_rules! test_per_row {
    ($($(#[$meta:meta])* $name:ident => $call:expr;)*) => {
        $(
            $(#[$meta])*
            #[test]
            fn $name() {
                $call;
            }
        )*
    };
}
