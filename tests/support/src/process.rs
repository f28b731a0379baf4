//! Processes in tests: waiting for a condition, telling a live process from a dead one,
//! killing what a failed test left running.

use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// Polls `check` every 5 ms until it returns `Some`, for at most `limit` (a process's death,
/// or a file another process writes, has no event to wait on); panics naming `what`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// [`wait_for`] from a task of a multi-threaded tokio runtime, which moves its other tasks off
/// this thread meanwhile (one polling loop serves sync and async tests alike).
pub fn wait_for_in_task<T>(limit: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    tokio::task::block_in_place(|| wait_for(limit, what, check))
}

/// Whether `pid` runs: it exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// The process group of `pid`, from `/proc` (the third field after the command's name).
pub fn pgrp_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process exists");
    stat.rsplit(')')
        .next()
        .and_then(|fields| fields.split_whitespace().nth(2))
        .and_then(|pgrp| pgrp.parse().ok())
        .unwrap_or_else(|| panic!("no process group in /proc/{pid}/stat: {stat}"))
}

/// A child process killed (and reaped) when dropped.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `command` without the caller's `ELECT_*` variables, so that a developer's own settings do
/// not leak into a test's `elect`.
pub fn without_elect_env(command: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars() {
        if key.starts_with("ELECT_") {
            command.env_remove(key);
        }
    }
    command
}

/// Runs `command` to its end; panics with what it printed unless it exited with status 0.
pub fn output_ok(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
