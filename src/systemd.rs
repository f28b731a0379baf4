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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::status::RunStatus;

/// Where and how often to tell systemd (from `NOTIFY_SOCKET` and `WATCHDOG_USEC`).
#[derive(Debug, Clone)]
pub struct SystemdNotify {
    socket: PathBuf,
    watchdog: Option<Duration>,
    /// `READY=1` was sent: the watchdog pings only after it, as systemd's protocol reads.
    ready: Arc<AtomicBool>,
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
        SystemdNotify {
            socket,
            watchdog,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sends one message (`KEY=value` lines); failures are logged, never fatal.
    pub fn send(&self, message: &str) {
        if message.lines().any(|line| line == "READY=1") {
            self.ready.store(true, Ordering::SeqCst);
        }
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
            if self.ready.load(Ordering::SeqCst) && status.healthy() {
                self.send("WATCHDOG=1");
            }
            tokio::time::sleep(interval / 2).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// systemd reads `READY=1` first: a watchdog ping must not overtake it, however the
    /// watchdog and the campaign loop are scheduled (tests/systemd_notify.rs saw one do so).
    #[tokio::test]
    async fn the_watchdog_pings_only_after_ready() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        let notify = SystemdNotify::new(path, Some(Duration::from_millis(20)));
        let status = RunStatus::default();
        assert!(status.healthy(), "healthy before campaigning");
        let before = tokio::time::timeout(Duration::from_millis(100), notify.watchdog(&status));
        assert!(before.await.is_err(), "the watchdog runs until dropped");
        let mut buf = [0u8; 64];
        assert!(
            socket.recv(&mut buf).is_err(),
            "no ping before READY=1 was sent"
        );
        notify.send("READY=1\nSTATUS=campaigning in e");
        let after = tokio::time::timeout(Duration::from_millis(100), notify.watchdog(&status));
        assert!(after.await.is_err());
        let mut received = Vec::new();
        while let Ok(n) = socket.recv(&mut buf) {
            received.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(
            received.first().map(String::as_str),
            Some("READY=1\nSTATUS=campaigning in e")
        );
        assert!(
            received[1..].iter().all(|m| m == "WATCHDOG=1") && received.len() > 1,
            "{received:?}"
        );
    }
}
