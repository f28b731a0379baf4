//! Running the cluster script (`tests/cluster/cluster`) as a child process, every call bounded
//! by a timeout: what the harness's own test and the network-namespace clusters share.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// One call of the cluster script.
#[derive(Debug)]
pub struct ScriptRun {
    /// The variables and arguments, for messages.
    pub args: String,
    /// `None` when the call was killed at its timeout.
    pub status: Option<ExitStatus>,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl ScriptRun {
    /// It exited with status 0.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The call, its status and its output, for a failure message.
    pub fn describe(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => "killed at its timeout".to_owned(),
        };
        format!(
            "`{}`: {status}\n--- stdout\n{}--- stderr\n{}",
            self.args, self.stdout, self.stderr
        )
    }
}

/// The cluster script: `ELECT_TEST_CLUSTER`, else the repository's.
pub fn script_path() -> PathBuf {
    std::env::var("ELECT_TEST_CLUSTER")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::repo().join("tests/cluster/cluster"))
}

/// Runs the script with `env` and `args`, killing it (and whatever it started in its process
/// group; server nodes run in sessions of their own, so they are not touched) at `timeout`.
pub fn run_cluster_script(env: &[(&str, &str)], args: &[&str], timeout: Duration) -> ScriptRun {
    use std::os::unix::process::CommandExt;
    let path = script_path();
    assert!(
        path.is_file(),
        "{} is missing: the harness is part of the repository",
        path.display()
    );
    let mut child = Command::new(&path)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let pid = child.id();
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let out_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(r) => Some(r.expect("waiting for the cluster script")),
        Err(_) => {
            // the whole process group: the script and its etcdctl/java/... children
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            let _ = rx.recv();
            None
        }
    };
    let _ = waiter.join();
    let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    ScriptRun {
        args: format!("{}tests/cluster/cluster {}", vars.concat(), args.join(" ")),
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}
