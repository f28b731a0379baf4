//! Starting a term's command, in its cgroup from its first instruction (`clone3` with
//! `CLONE_INTO_CGROUP`), forked before the win and let exec once the term is granted.
//!
//! Moving a running process into a cgroup (a write to `cgroup.procs`, what a `pre_exec` hook
//! of `std::process::Command` could do) takes the kernel's cgroup threadgroup lock for
//! writing, which waits for an RCU grace period unless another move happened just before:
//! 10–11 ms on the bench machine, added to every handover of `elect run`. A process created
//! in its cgroup takes that lock only for reading.
//!
//! The fork, the building of the environment and the cgroup are done while campaigning
//! ([`Launch::prepare`]): the child then waits, signals blocked, on a pipe. Once elected,
//! [`Waiting::start`] writes the one value known only then (the fencing token) into the pipe,
//! and the child puts it in its environment and execs. What is left after the win is a pipe
//! write and the exec, as for any tool that runs a command.
//!
//! Between `clone3` and `execve` the child is a copy of a multi-threaded process with one
//! thread: it makes only async-signal-safe calls, on memory prepared before the clone.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::libc;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// `CLONE_INTO_CGROUP` (Linux 5.7): libc's constant is an `int` too narrow for it.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The longest value [`Waiting::start`] takes (a `u64` has 20 digits).
pub(crate) const LATE_VALUE_MAX: usize = 32;

/// `clone3` calls of this process, one at a time: a child forked while another's pipes are
/// open in the parent keeps copies of their ends for as long as it waits, and the other's
/// exec report would then never see its end of file.
static FORKING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What the child needs, made before the clone: it may not allocate after it.
#[derive(Debug)]
pub(crate) struct Launch {
    program: CString,
    /// The arguments (the program's name first), and their pointers, null-terminated.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    /// `NAME=value` entries, and their pointers, null-terminated.
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// `NAME=` and room for the value given to [`Waiting::start`], zero-filled (the child
    /// reads the value into it); in `envp_ptrs` if a late variable was asked for.
    _late_entry: Vec<u8>,
    /// Where the late value goes in `late_entry` (the child writes it there).
    late_value_at: *mut u8,
    /// The process group to join (0: a group of its own).
    process_group: libc::pid_t,
}

// SAFETY: the raw pointers point into the strings this value owns, which move with it.
unsafe impl Send for Launch {}

impl Launch {
    /// `program` (looked up in `PATH` as `execvp` does) with `args`, the environment `env`
    /// and, if `late` names one, a variable whose value is given only to [`Waiting::start`],
    /// joining `process_group` (0: a new one led by the command). `InvalidInput` if any of
    /// them holds a NUL byte.
    pub(crate) fn new(
        program: &OsStr,
        args: &[OsString],
        env: impl IntoIterator<Item = (OsString, OsString)>,
        late: Option<&str>,
        process_group: u32,
    ) -> io::Result<Launch> {
        let c_string = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the command")
            })
        };
        let program = c_string(program.as_bytes())?;
        let argv = std::iter::once(Ok(program.clone()))
            .chain(args.iter().map(|a| c_string(a.as_bytes())))
            .collect::<io::Result<Vec<_>>>()?;
        let envp = env
            .into_iter()
            .map(|(name, value)| {
                let mut entry = name.into_vec();
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                c_string(&entry)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut late_entry = Vec::new();
        if let Some(name) = late {
            late_entry.extend_from_slice(c_string(name.as_bytes())?.as_bytes());
            late_entry.push(b'=');
        }
        // Zeroes after the value: it stays NUL-terminated.
        late_entry.resize(late_entry.len() + LATE_VALUE_MAX + 1, 0);
        let value_at = late_entry.len() - LATE_VALUE_MAX - 1;
        // SAFETY: within the vector, which is never resized again.
        let late_value_at = unsafe { late_entry.as_mut_ptr().add(value_at) };
        let pointers = |strings: &[CString]| {
            strings
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        let mut envp_ptrs = pointers(&envp);
        if late.is_some() {
            envp_ptrs.insert(envp.len(), late_entry.as_ptr().cast());
        }
        Ok(Launch {
            argv_ptrs: pointers(&argv),
            envp_ptrs,
            program,
            _argv: argv,
            _envp: envp,
            _late_entry: late_entry,
            late_value_at,
            process_group: process_group as libc::pid_t,
        })
    }

    /// Forks the command in the cgroup whose directory `cgroup` is open (else in ours), with
    /// SIGKILL as its parent-death signal; it waits, running nothing of the program, until
    /// [`Waiting::start`] (or is killed when the [`Waiting`] is dropped).
    pub(crate) fn prepare(&self, cgroup: Option<BorrowedFd<'_>>) -> io::Result<Waiting> {
        let forking = FORKING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (go_read, go_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (report_read, report_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let parent = nix::unistd::getpid().as_raw();
        let mut pidfd: libc::c_int = -1;
        // SAFETY: an all-zero clone_args is valid (no flags); the fields set below are what
        // clone3 reads.
        let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
        args.flags = libc::CLONE_PIDFD as u64;
        args.pidfd = &mut pidfd as *mut libc::c_int as u64;
        args.exit_signal = libc::SIGCHLD as u64;
        if let Some(cgroup) = cgroup {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = cgroup.as_raw_fd() as u64;
        }
        // The child starts with every signal blocked (it inherits this thread's mask), so that
        // none runs one of our handlers before it has reset them; this thread's mask is
        // restored at once.
        let before = nix::sys::signal::SigSet::all()
            .thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_SETMASK)?;
        // SAFETY: clone3 without CLONE_VM is a fork: the child runs on a copy of this stack
        // and, until exec, calls only async-signal-safe functions on memory made before.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const libc::clone_args,
                std::mem::size_of::<libc::clone_args>(),
            )
        };
        if pid == 0 {
            // SAFETY: in the child; see above. Never returns.
            unsafe { self.exec_in_child(parent, go_read.as_raw_fd(), report_write.as_raw_fd()) }
        }
        let clone_error = io::Error::last_os_error();
        let restored = before.thread_set_mask();
        if pid < 0 {
            return Err(clone_error);
        }
        drop((go_read, report_write));
        drop(forking);
        let waiting = Waiting {
            pid: Pid::from_raw(pid as libc::pid_t),
            // SAFETY: clone3 returned a new descriptor in `pidfd` with CLONE_PIDFD.
            pidfd: Some(unsafe { OwnedFd::from_raw_fd(pidfd) }),
            go: go_write,
            report: report_read,
        };
        // Unstarted, the waiting child is killed when this returns an error.
        restored?;
        Ok(waiting)
    }

    /// The child's side: our signal handlers gone and every signal blocked while it waits,
    /// its process group, the parent-death signal; then the late value read from `go` (end of
    /// file: the parent let the term go, and the child exits), the signal state a new program
    /// expects, exec. On failure the errno goes to `report`, and the child exits.
    unsafe fn exec_in_child(&self, parent: libc::pid_t, go: libc::c_int, report: libc::c_int) -> ! {
        let fail = |report: libc::c_int| -> ! {
            let errno = *libc::__errno_location();
            let bytes = errno.to_ne_bytes();
            libc::write(report, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        };
        // A signal while waiting must not run one of our handlers (tokio's would wake the
        // parent's signal driver): handlers go back to the default, as exec would do, and
        // signals wait, blocked since the clone, until the program runs.
        for signal in 1..=libc::SIGRTMAX() {
            let mut action: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut action) == 0
                && action.sa_sigaction != libc::SIG_DFL
                && action.sa_sigaction != libc::SIG_IGN
            {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        // Rust ignores SIGPIPE, but a program must not start so: ignored signals survive exec.
        if libc::signal(libc::SIGPIPE, libc::SIG_DFL) == libc::SIG_ERR {
            fail(report);
        }
        if libc::setpgid(0, self.process_group) != 0 {
            fail(report);
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            fail(report);
        }
        // If elect died before prctl took effect, the signal will never come.
        if libc::getppid() != parent {
            *libc::__errno_location() = libc::ESRCH;
            fail(report);
        }
        let read = loop {
            let read = libc::read(go, self.late_value_at.cast(), LATE_VALUE_MAX);
            if read >= 0 || *libc::__errno_location() != libc::EINTR {
                break read;
            }
        };
        if read <= 0 {
            libc::_exit(127);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            fail(report);
        }
        libc::execvpe(
            self.program.as_ptr(),
            self.argv_ptrs.as_ptr(),
            self.envp_ptrs.as_ptr(),
        );
        fail(report)
    }
}

/// A command forked by [`Launch::prepare`], waiting to be let exec. Dropped unstarted, it is
/// killed and reaped.
#[derive(Debug)]
pub(crate) struct Waiting {
    pid: Pid,
    /// `None` once started: the [`Spawned`] owns it.
    pidfd: Option<OwnedFd>,
    /// A write lets the child exec.
    go: OwnedFd,
    /// The child's errno if it cannot exec; end of file once it has.
    report: OwnedFd,
}

impl Waiting {
    /// The process id.
    pub(crate) fn id(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Lets the command exec, with `late_value` as the late variable's value (if
    /// [`Launch::new`] named one), and returns once it runs the program — or the error that
    /// kept it from it (`NotFound`, `PermissionDenied`, …). `InvalidInput` if `late_value` is
    /// empty, longer than [`LATE_VALUE_MAX`] or holds a NUL byte.
    pub(crate) fn start(mut self, late_value: &[u8]) -> io::Result<Spawned> {
        if late_value.is_empty() || late_value.len() > LATE_VALUE_MAX || late_value.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the late value must be 1 to {LATE_VALUE_MAX} bytes without NUL, not {:?}",
                    String::from_utf8_lossy(late_value)
                ),
            ));
        }
        // One write of at most PIPE_BUF bytes: the child reads it whole. If it failed to set
        // itself up, it has exited (the write fails) and its report says why.
        let sent = nix::unistd::write(&self.go, late_value);
        let mut errno = [0u8; 4];
        // The report's write end closes at exec (CLOEXEC): nothing read means it runs.
        let read = loop {
            match nix::unistd::read(&self.report, &mut errno) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        };
        match read {
            Ok(0) => {
                let pidfd = self.pidfd.take().expect("a waiting command has its pidfd");
                // SAFETY: the AsyncFd owns the descriptor, which stays open as long as it.
                match unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) } {
                    Ok(pidfd) => Ok(Spawned {
                        pid: self.pid,
                        pidfd,
                    }),
                    Err(error) => {
                        let _ = kill(self.pid, Signal::SIGKILL);
                        let _ = waitpid(self.pid, None);
                        Err(error.into())
                    }
                }
            }
            Ok(_) => Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno))),
            Err(error) => Err(sent.err().unwrap_or(error).into()),
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.pidfd.is_some() {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// A command started by [`Waiting::start`].
#[derive(Debug)]
pub(crate) struct Spawned {
    pid: Pid,
    /// Readable once the process has exited.
    pidfd: AsyncFd<OwnedFd>,
}

impl Spawned {
    /// Waits until the process exits, and reaps it. Cancel-safe.
    pub(crate) async fn wait(&self) -> io::Result<ExitStatus> {
        loop {
            let mut ready = self.pidfd.readable().await?;
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(ExitStatus::from_raw(code << 8)),
                Ok(WaitStatus::Signaled(_, signal, core)) => {
                    let core = if core { 0x80 } else { 0 };
                    return Ok(ExitStatus::from_raw(signal as i32 | core));
                }
                Ok(_) => ready.clear_ready(),
                Err(nix::errno::Errno::EINTR) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn sh(script: &str) -> Launch {
        let args = ["-c".into(), script.into()];
        Launch::new("sh".as_ref(), &args, std::env::vars_os(), None, 0).expect("a valid command")
    }

    impl Launch {
        /// Prepared and started at once, in our cgroup.
        fn spawn(&self) -> io::Result<Spawned> {
            self.prepare(None)?.start(b"go")
        }
    }

    #[tokio::test]
    async fn the_status_is_the_commands_exit_code_or_signal() {
        let exited = sh("exit 3").spawn().unwrap().wait().await.unwrap();
        assert_eq!(exited.code(), Some(3));
        let killed = sh("kill -9 $$").spawn().unwrap().wait().await.unwrap();
        assert_eq!(killed.signal(), Some(9));
    }

    #[test]
    fn a_waiting_command_runs_nothing_of_the_program_and_goes_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let waiting = sh(&format!("touch {}", marker.display()))
            .prepare(None)
            .unwrap();
        let pid = Pid::from_raw(waiting.id() as i32);
        // Still a copy of this test program, not the shell.
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(exe, std::env::current_exe().unwrap());
        drop(waiting);
        // Killed and reaped: the pid names nothing of ours any more.
        assert_eq!(kill(pid, None), Err(nix::errno::Errno::ESRCH));
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn the_late_variable_holds_the_value_given_at_start() {
        let args = [
            "-c".into(),
            r#"[ "$LATE" = 1796428 ] && [ "$EARLY" = set ]"#.into(),
        ];
        let env = [
            ("EARLY".into(), "set".into()),
            ("PATH".into(), std::env::var_os("PATH").unwrap()),
        ];
        let launch = Launch::new("sh".as_ref(), &args, env, Some("LATE"), 0).unwrap();
        let status = launch
            .prepare(None)
            .unwrap()
            .start(b"1796428")
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert!(status.success(), "{status}");
        for bad in [&b""[..], &b"a\0b"[..], &[b'9'; LATE_VALUE_MAX + 1][..]] {
            let waiting = launch.prepare(None).unwrap();
            let error = waiting.start(bad).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_signal_to_a_waiting_command_runs_none_of_our_handlers() {
        // Our handler, inherited by the fork, would swallow the signal.
        let _ours =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).unwrap();
        let waiting = sh("exit 0").prepare(None).unwrap();
        kill(Pid::from_raw(waiting.id() as i32), Signal::SIGUSR1).unwrap();
        let status = waiting.start(b"go").unwrap().wait().await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGUSR1), "{status}");
    }

    #[tokio::test]
    async fn the_command_leads_its_own_process_group_with_the_environment_given() {
        let env = [
            ("ONLY".into(), "this".into()),
            ("PATH".into(), std::env::var_os("PATH").unwrap()),
        ];
        // Field 5 of /proc/PID/stat is the process group.
        let script = r#"[ "$(cut -d' ' -f5 /proc/$$/stat)" = "$$" ] && [ "$ONLY" = this ] && [ -z "$HOME" ]"#;
        let args = ["-c".into(), script.into()];
        let launch = Launch::new("sh".as_ref(), &args, env, None, 0).unwrap();
        let status = launch.spawn().unwrap().wait().await.unwrap();
        assert!(status.success(), "{status}");
    }

    #[tokio::test]
    async fn a_program_that_cannot_run_is_an_error_of_its_kind() {
        let missing = Launch::new("/nonexistent/program".as_ref(), &[], [], None, 0).unwrap();
        let error = missing.spawn().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
        let not_executable = Launch::new("/etc/passwd".as_ref(), &[], [], None, 0).unwrap();
        let error = not_executable.spawn().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied, "{error}");
    }

    #[test]
    fn a_command_that_cannot_set_itself_up_says_why_at_start() {
        // No process group 2^30 exists in our session: setpgid fails with EPERM.
        let launch = Launch::new("true".as_ref(), &[], [], None, 1 << 30).unwrap();
        let error = launch.prepare(None).unwrap().start(b"go").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EPERM), "{error}");
    }

    #[test]
    fn a_nul_byte_is_refused_before_anything_starts() {
        let error = Launch::new("a\0b".as_ref(), &[], [], None, 0).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
