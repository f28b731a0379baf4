//! Issue 15, item 3: `elect run` under systemd's `Type=notify`: the test listens on the
//! `NOTIFY_SOCKET` and reads what `elect` tells it — `READY=1` once campaigning, `STATUS=`
//! lines with the state, and `WATCHDOG=1` every half `WATCHDOG_USEC` while it runs.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

#[test]
fn ready_status_and_watchdog_reach_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_elect"));
    elect_test_support::process::without_elect_env(&mut command);
    // Read as systemd does, while elect runs (the socket's queue holds 10 datagrams).
    let reader = std::thread::spawn(move || {
        let mut messages = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let last = message == "STATUS=stopped";
            messages.push(message);
            if last {
                break;
            }
        }
        messages
    });
    let status = command
        .env("ELECT_FILE_DIR", dir.path().join("locks"))
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "100000")
        .args(["run", "--election", "sd", "--", "sleep", "1"])
        .status()
        .unwrap();
    assert!(status.success());
    let messages = reader.join().unwrap();
    eprintln!("{messages:#?}");
    assert_eq!(
        messages.first().map(String::as_str),
        Some("READY=1\nSTATUS=campaigning in sd")
    );
    let leading = messages
        .iter()
        .position(|m| m.starts_with("STATUS=leading sd with fencing token "))
        .expect("a STATUS line for the term");
    let over = messages
        .iter()
        .position(|m| m.starts_with("STATUS=term with fencing token "))
        .expect("a STATUS line for the term's end");
    assert!(leading < over);
    // A 1 s term with a ping every 50 ms: about 20 pings while leading.
    let pings = messages[leading..over]
        .iter()
        .filter(|m| *m == "WATCHDOG=1")
        .count();
    assert!(pings >= 10, "{pings} watchdog pings in a 1 s term");
    assert_eq!(messages.last().map(String::as_str), Some("STATUS=stopped"));
}
