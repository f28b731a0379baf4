//! Starting a term's command, in its cgroup from its first instruction (`clone3` with
//! `CLONE_INTO_CGROUP`).
//!
//! Moving a running process into a cgroup (a write to `cgroup.procs`, what a `pre_exec` hook
//! of `std::process::Command` could do) takes the kernel's cgroup threadgroup lock for
//! writing, which waits for an RCU grace period unless another move happened just before:
//! 10–11 ms on the bench machine, added to every handover of `elect run`. A process created
//! in its cgroup takes that lock only for reading.
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
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// `CLONE_INTO_CGROUP` (Linux 5.7): libc's constant is an `int` too narrow for it.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

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
    /// The process group to join (0: a group of its own).
    process_group: libc::pid_t,
}

impl Launch {
    /// `program` (looked up in `PATH` as `execvp` does) with `args`, the environment `env`,
    /// joining `process_group` (0: a new one led by the command). `InvalidInput` if any of
    /// them holds a NUL byte.
    pub(crate) fn new(
        program: &OsStr,
        args: &[OsString],
        env: impl IntoIterator<Item = (OsString, OsString)>,
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
        let pointers = |strings: &[CString]| {
            strings
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        Ok(Launch {
            argv_ptrs: pointers(&argv),
            envp_ptrs: pointers(&envp),
            program,
            _argv: argv,
            _envp: envp,
            process_group: process_group as libc::pid_t,
        })
    }

    /// Starts the command in the cgroup whose directory `cgroup` is open (else in ours), with
    /// SIGKILL as its parent-death signal, and returns once it runs the program — or the
    /// error that kept it from it (`NotFound`, `PermissionDenied`, …).
    pub(crate) fn spawn(&self, cgroup: Option<BorrowedFd<'_>>) -> io::Result<Spawned> {
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
            unsafe { self.exec_in_child(parent, report_write.as_raw_fd()) }
        }
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        drop(report_write);
        let pid = Pid::from_raw(pid as libc::pid_t);
        // SAFETY: clone3 returned a new descriptor in `pidfd` with CLONE_PIDFD.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        // The report's write end closes at exec (CLOEXEC): nothing read means it runs.
        let mut errno = [0u8; 4];
        let read = loop {
            match nix::unistd::read(&report_read, &mut errno) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        };
        match read {
            Ok(0) => {
                // SAFETY: the AsyncFd owns the descriptor, which stays open as long as it.
                match unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) } {
                    Ok(pidfd) => Ok(Spawned { pid, pidfd }),
                    Err(error) => {
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                        let _ = waitpid(pid, None);
                        Err(error.into())
                    }
                }
            }
            Ok(_) => {
                let _ = waitpid(pid, None);
                Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
            }
            Err(error) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(pid, None);
                Err(error.into())
            }
        }
    }

    /// The child's side: the signal state a new program expects, its process group, the
    /// parent-death signal, exec. On failure the errno goes to `report`, and the child exits.
    unsafe fn exec_in_child(&self, parent: libc::pid_t, report: libc::c_int) -> ! {
        let fail = |report: libc::c_int| -> ! {
            let errno = *libc::__errno_location();
            let bytes = errno.to_ne_bytes();
            libc::write(report, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        };
        // Rust ignores SIGPIPE and tokio blocks nothing, but a program must not start with
        // either: ignored signals and the mask survive exec.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            fail(report);
        }
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
        libc::execvpe(
            self.program.as_ptr(),
            self.argv_ptrs.as_ptr(),
            self.envp_ptrs.as_ptr(),
        );
        fail(report)
    }
}

/// A command started by [`Launch::spawn`].
#[derive(Debug)]
pub(crate) struct Spawned {
    pid: Pid,
    /// Readable once the process has exited.
    pidfd: AsyncFd<OwnedFd>,
}

impl Spawned {
    /// The process id.
    pub(crate) fn id(&self) -> u32 {
        self.pid.as_raw() as u32
    }

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
        Launch::new("sh".as_ref(), &args, std::env::vars_os(), 0).expect("a valid command")
    }

    #[tokio::test]
    async fn the_status_is_the_commands_exit_code_or_signal() {
        let exited = sh("exit 3").spawn(None).unwrap().wait().await.unwrap();
        assert_eq!(exited.code(), Some(3));
        let killed = sh("kill -9 $$").spawn(None).unwrap().wait().await.unwrap();
        assert_eq!(killed.signal(), Some(9));
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
        let launch = Launch::new("sh".as_ref(), &args, env, 0).unwrap();
        let status = launch.spawn(None).unwrap().wait().await.unwrap();
        assert!(status.success(), "{status}");
    }

    #[tokio::test]
    async fn a_program_that_cannot_run_is_an_error_of_its_kind() {
        let missing = Launch::new("/nonexistent/program".as_ref(), &[], [], 0).unwrap();
        let error = missing.spawn(None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
        let not_executable = Launch::new("/etc/passwd".as_ref(), &[], [], 0).unwrap();
        let error = not_executable.spawn(None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied, "{error}");
    }

    #[test]
    fn a_nul_byte_is_refused_before_anything_starts() {
        let error = Launch::new("a\0b".as_ref(), &[], [], 0).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
