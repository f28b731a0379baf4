//! The conformance suite on the file backend, each case in a fresh directory.

use std::sync::Arc;
use std::time::Duration;

use elect_core::testkit::Harness;
use elect_file::FileElector;

fn harness() -> Harness {
    let dir = Arc::new(tempfile::tempdir().expect("a temporary directory"));
    let connect_dir = dir.clone();
    let mut harness = Harness::new(
        "file",
        move || {
            // The suite's "claim deleted" case keeps the revoked handle without resigning it
            // while the next candidate campaigns: that candidate waits out the old term's
            // stop grace (plus poll and 500 ms), so keep it well under `quick`.
            let elector = FileElector::new(connect_dir.path())
                .with_poll_interval(Duration::from_millis(20))
                .with_stop_grace(Duration::from_millis(300));
            async move { Ok(elector) }
        },
        move |election| {
            // What an operator would do: remove the lock file (and the record beside it).
            let lock = dir.path().join(format!("{election}.lock"));
            let leader = dir.path().join(format!("{election}.leader"));
            async move {
                std::fs::remove_file(&lock).expect("remove the lock file");
                let _ = std::fs::remove_file(&leader);
                Ok(())
            }
        },
    );
    // The kernel releases a dead holder's lock at once.
    harness.crash_failover = Duration::from_secs(1);
    harness
}

mod conformance {
    elect_core::conformance_suite!(super::harness());
}
