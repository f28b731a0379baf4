//! systemd's notify protocol for `elect run` under `Type=notify`: `READY=1` once campaigning,
//! `STATUS=` with the state, and `WATCHDOG=1` only while nothing is wrong — campaigning, or
//! leading with a confirmed deadline — so that systemd restarts an `elect` whose leadership
//! is no longer confirmed for longer than `WatchdogSec`, or whose loop is wedged.
//!
//! ```ini
//! [Service]
//! Type=notify
//! NotifyAccess=main
//! WatchdogSec=30s
//! ExecStart=/usr/local/bin/elect run --url etcd://10.0.0.1:2379/billing -- /usr/local/bin/billing
//! ```

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use crate::status::RunStatus;

/// Where and how often to tell systemd (from `NOTIFY_SOCKET` and `WATCHDOG_USEC`).
#[derive(Debug, Clone)]
pub struct SystemdNotify {
    socket: PathBuf,
    watchdog: Option<Duration>,
}

impl SystemdNotify {
    /// The notifier systemd asked for in this process's environment, if any: `NOTIFY_SOCKET`
    /// (a path, or `@name` in the abstract namespace), and `WATCHDOG_USEC` if `WATCHDOG_PID`
    /// is unset or ours.
    pub fn from_env() -> Option<SystemdNotify> {
        let socket = std::env::var_os("NOTIFY_SOCKET")?;
        let ours = std::env::var("WATCHDOG_PID")
            .map_or(true, |pid| pid.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|usec| *usec > 0 && ours)
            .map(Duration::from_micros);
        Some(SystemdNotify::new(PathBuf::from(socket), watchdog))
    }

    /// A notifier for `socket`, pinging every half `watchdog` if given.
    pub fn new(socket: PathBuf, watchdog: Option<Duration>) -> SystemdNotify {
        SystemdNotify { socket, watchdog }
    }

    /// Sends one message (`KEY=value` lines); failures are logged, never fatal.
    pub fn send(&self, message: &str) {
        if let Err(error) = self.try_send(message) {
            tracing::warn!(socket = %self.socket.display(), %error, "cannot notify systemd");
        }
    }

    fn try_send(&self, message: &str) -> std::io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        // Never wait on systemd: a full queue (10 datagrams by default) drops this message.
        socket.set_nonblocking(true)?;
        let path = self.socket.as_os_str().as_encoded_bytes();
        if let Some(name) = path.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message.as_bytes(), &address)?;
        } else {
            socket.send_to(message.as_bytes(), &self.socket)?;
        }
        Ok(())
    }

    /// Pings `WATCHDOG=1` every half watchdog interval while `status` is healthy (campaigning,
    /// or leading with a confirmed deadline); runs until dropped. Does nothing without a
    /// watchdog.
    pub(crate) async fn watchdog(&self, status: &RunStatus) {
        let Some(interval) = self.watchdog else {
            return std::future::pending().await;
        };
        loop {
            if status.healthy() {
                self.send("WATCHDOG=1");
            }
            tokio::time::sleep(interval / 2).await;
        }
    }
}
