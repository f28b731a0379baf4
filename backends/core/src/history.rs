//! A history of what candidates believed and did, for audits and for the fault suite's
//! checker: one JSON line per event, stamped with the machine's `CLOCK_MONOTONIC`, so that
//! every process on one host writes on the same time line.
//!
//! Many processes may append to one file: each record is a single `write` to a file opened
//! with `O_APPEND`, so lines never interleave.
//!
//! ```no_run
//! # async fn f(leadership: elect_core::Leadership) -> std::io::Result<()> {
//! use elect_core::history::History;
//!
//! let history = History::open("/var/log/billing.history", "replica-1")?;
//! history.elected(&leadership)?;
//! history.action(&leadership, "charged sub-7 for period 12")?;
//! let reason = leadership.lost().await;
//! history.lost(&leadership, reason.as_str())?;
//! # Ok(()) }
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::Leadership;

/// Nanoseconds on `CLOCK_MONOTONIC`: the same time line for every process on the machine.
pub fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always readable on Linux");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

/// An [`Instant`] (tokio's and std's run on `CLOCK_MONOTONIC` on Linux) as
/// [`monotonic_ns`] nanoseconds.
pub fn instant_ns(instant: Instant) -> u64 {
    let (now, now_ns) = (Instant::now(), monotonic_ns());
    if instant >= now {
        now_ns + (instant - now).as_nanos() as u64
    } else {
        now_ns.saturating_sub((now - instant).as_nanos() as u64)
    }
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When, in [`monotonic_ns`] nanoseconds.
    pub t: u64,
    /// Who wrote it: a candidate id, or the fault injector.
    pub who: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// Became leader with `token`; `deadline` is the term's first deadline, if it has one.
    Elected {
        /// The term's fencing token.
        token: u64,
        /// [`monotonic_ns`] of the deadline.
        deadline: Option<u64>,
    },
    /// Stopped believing it leads (written *before* a resign is sent, or when the loss was
    /// noticed); `deadline` is the term's deadline at that moment: belief ends at the earlier
    /// of the two.
    Lost {
        /// The term's fencing token.
        token: u64,
        /// [`crate::LossReason::as_str`], or what the writer knows.
        reason: String,
        /// [`monotonic_ns`] of the deadline.
        deadline: Option<u64>,
    },
    /// Something done as leader under `token` (logged before it is attempted).
    Action {
        /// The token the action carried.
        token: u64,
        /// What was done.
        what: String,
    },
    /// A fault was injected (by a fault injector, not by candidates).
    Fault {
        /// Which fault: `kill-leader`, `freeze-leader`, …
        kind: String,
        /// The candidate or node it targets.
        target: Option<String>,
    },
    /// The fault injected last with this `kind` was undone (thawed, restarted, reconnected).
    Healed {
        /// Which fault.
        kind: String,
        /// The candidate or node it targeted.
        target: Option<String>,
    },
}

/// An append-only history file shared by any number of writers.
#[derive(Debug)]
pub struct History {
    file: File,
    who: String,
}

impl History {
    /// Opens (creating if needed) `path` for appending records written by `who`.
    pub fn open(path: impl AsRef<Path>, who: impl Into<String>) -> io::Result<History> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(History {
            file,
            who: who.into(),
        })
    }

    /// Appends `event`, stamped now.
    pub fn record(&self, event: Event) -> io::Result<()> {
        let record = Record {
            t: monotonic_ns(),
            who: self.who.clone(),
            event,
        };
        let mut line = serde_json::to_vec(&record).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write per line: O_APPEND keeps lines whole across processes.
        (&self.file).write_all(&line)
    }

    /// Records that `leadership` was just won.
    pub fn elected(&self, leadership: &Leadership) -> io::Result<()> {
        self.record(Event::Elected {
            token: leadership.token().get(),
            deadline: leadership.deadline().map(instant_ns),
        })
    }

    /// Records that `leadership` is no longer believed in, for `reason`.
    pub fn lost(&self, leadership: &Leadership, reason: &str) -> io::Result<()> {
        self.record(Event::Lost {
            token: leadership.token().get(),
            reason: reason.to_owned(),
            deadline: leadership.deadline().map(instant_ns),
        })
    }

    /// Records an action about to be taken under `leadership`'s token.
    pub fn action(&self, leadership: &Leadership, what: impl Into<String>) -> io::Result<()> {
        self.record(Event::Action {
            token: leadership.token().get(),
            what: what.into(),
        })
    }
}

/// Reads every record of a history file, in file order. A torn last line (a writer killed
/// mid-write) is skipped; any other malformed line is an error naming its line number.
pub fn read(path: impl AsRef<Path>) -> io::Result<Vec<Record>> {
    let path = path.as_ref();
    let lines: Vec<String> = io::BufReader::new(File::open(path)?)
        .lines()
        .collect::<io::Result<_>>()?;
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(_) if i + 1 == lines.len() => {}
            Err(error) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}:{}: {error}", path.display(), i + 1),
                ))
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_a_shared_file() {
        let dir = std::env::temp_dir().join(format!("elect-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.jsonl");
        let a = History::open(&path, "a").unwrap();
        let b = History::open(&path, "b").unwrap();
        a.record(Event::Fault {
            kind: "kill-leader".into(),
            target: Some("b".into()),
        })
        .unwrap();
        b.record(Event::Action {
            token: 7,
            what: "charge".into(),
        })
        .unwrap();
        let records = read(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].who, "a");
        assert_eq!(
            records[1].event,
            Event::Action {
                token: 7,
                what: "charge".into()
            }
        );
        assert!(records[0].t <= records[1].t);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_skipped_but_a_torn_middle_line_is_an_error() {
        let dir = std::env::temp_dir().join(format!("elect-history-torn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.jsonl");
        let good = r#"{"t":1,"who":"a","event":"elected","token":3,"deadline":null}"#;
        std::fs::write(&path, format!("{good}\n{{\"t\":2,\"wh")).unwrap();
        assert_eq!(read(&path).unwrap().len(), 1);
        std::fs::write(&path, format!("{{\"t\":2,\"wh\n{good}\n")).unwrap();
        let error = read(&path).unwrap_err().to_string();
        assert!(error.contains("h.jsonl:1"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn instants_map_onto_the_monotonic_clock() {
        let now = monotonic_ns();
        let later = instant_ns(Instant::now() + std::time::Duration::from_secs(2));
        assert!(later >= now + 1_900_000_000 && later <= now + 2_100_000_000);
    }
}
