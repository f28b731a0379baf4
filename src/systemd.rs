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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use elect_core::{Leadership, LeadershipState};

/// Where and how often to tell systemd (from `NOTIFY_SOCKET` and `WATCHDOG_USEC`).
#[derive(Debug, Clone)]
pub struct SystemdNotify {
    socket: PathBuf,
    watchdog: Option<Duration>,
    state: Arc<Mutex<Watched>>,
}

/// What the watchdog looks at.
#[derive(Debug, Default)]
enum Watched {
    /// Not campaigning yet, or stopping.
    #[default]
    Idle,
    Campaigning,
    Leading(Leadership),
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
            state: Arc::default(),
        }
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

    /// Campaigning: ready, and the watchdog pings.
    pub(crate) fn campaigning(&self, election: &str) {
        *self.state.lock().expect("notify state poisoned") = Watched::Campaigning;
        self.send(&format!("READY=1\nSTATUS=campaigning in {election}"));
    }

    /// Leading: the watchdog pings while the term's deadline is confirmed.
    pub(crate) fn leading(&self, leadership: &Leadership) {
        *self.state.lock().expect("notify state poisoned") = Watched::Leading(leadership.clone());
        self.send(&format!(
            "STATUS=leading {} with fencing token {}",
            leadership.election(),
            leadership.token()
        ));
    }

    /// The term is over (or `elect` is stopping): no more pings for it.
    pub(crate) fn ended(&self, status: &str) {
        *self.state.lock().expect("notify state poisoned") = Watched::Idle;
        self.send(&format!("STATUS={status}"));
    }

    /// Pings `WATCHDOG=1` every half watchdog interval while [`SystemdNotify::healthy`]; runs
    /// until dropped. Does nothing without a watchdog.
    pub(crate) async fn watchdog(&self) {
        let Some(interval) = self.watchdog else {
            return std::future::pending().await;
        };
        loop {
            if self.healthy() {
                self.send("WATCHDOG=1");
            }
            tokio::time::sleep(interval / 2).await;
        }
    }

    /// Campaigning, or leading with a deadline that is confirmed and not yet past.
    fn healthy(&self) -> bool {
        match &*self.state.lock().expect("notify state poisoned") {
            Watched::Idle => true,
            Watched::Campaigning => true,
            Watched::Leading(leadership) => {
                leadership.state() == LeadershipState::Leading
                    && leadership
                        .deadline()
                        .map_or(true, |deadline| deadline > elect_core::clock::now())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use elect_core::clock::LeaseClock;

    /// The watchdog pings while campaigning and while a term's deadline is confirmed; not while
    /// the term is suspended (renewals unanswered) or past its deadline.
    #[tokio::test]
    async fn the_watchdog_pings_only_while_the_deadline_is_confirmed() {
        let notify = SystemdNotify::new("/nonexistent".into(), Some(Duration::from_secs(1)));
        assert!(notify.healthy(), "before campaigning");
        *notify.state.lock().unwrap() = Watched::Campaigning;
        assert!(notify.healthy(), "campaigning");

        let ttl = Duration::from_secs(10);
        let clock = LeaseClock::new(elect_core::clock::now(), ttl, ttl / 10, ttl / 3);
        let (leadership, _term, _claim) = elect_core::testkit::accepted_term(&clock, 7);
        *notify.state.lock().unwrap() = Watched::Leading(leadership.clone());
        assert!(notify.healthy(), "leading, confirmed");
        clock.suspend();
        assert!(!notify.healthy(), "suspended: renewals unanswered");
        clock.confirm(elect_core::clock::now(), ttl);
        assert!(notify.healthy(), "confirmed again");

        let short = LeaseClock::new(
            elect_core::clock::now(),
            Duration::from_millis(30),
            Duration::from_millis(10),
            Duration::from_millis(10),
        );
        let (late, _term, _claim) = elect_core::testkit::accepted_term(&short, 8);
        *notify.state.lock().unwrap() = Watched::Leading(late);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!notify.healthy(), "past its deadline");
    }
}
