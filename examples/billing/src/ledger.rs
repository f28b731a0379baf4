//! The billing ledger: the downstream system that fencing tokens protect.
//!
//! It keeps the highest fencing token any write carried and rejects a write carrying a lower
//! one, so a leader that woke from a pause after its successor wrote can no longer charge.
//! Every write, accepted or rejected, goes into a journal for the fault suite's checker.
//! One SQLite file, shared by all replicas on the host (WAL mode, writes serialised by
//! `BEGIN IMMEDIATE`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// What the ledger answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Written; the token is now the highest seen (or equal to it).
    Accepted,
    /// Refused: a write with the greater token `highest` came first.
    Rejected {
        /// The highest token the ledger has seen.
        highest: u64,
    },
}

/// What a journal entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// A leader announced its term: from now on lower tokens are refused.
    OpenTerm,
    /// A leader charged `subscription` for `period`.
    Charge {
        /// The subscription charged.
        subscription: String,
        /// The billing period it was charged for.
        period: i64,
    },
}

/// One write the ledger saw, in the order it saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the ledger's order.
    pub seq: u64,
    /// When, in `elect_core::history::monotonic_ns` nanoseconds.
    pub t: u64,
    /// The candidate that wrote.
    pub who: String,
    /// The fencing token the write carried.
    pub token: u64,
    /// What it did.
    pub operation: Operation,
    /// Whether the ledger took it.
    pub accepted: bool,
}

/// Why the ledger failed (not a refusal: those are [`Verdict::Rejected`]).
#[derive(Debug, thiserror::Error)]
#[error("ledger {path}: {operation}: {source}")]
pub struct LedgerError {
    /// The SQLite file.
    pub path: String,
    /// What failed: `open`, `set WAL mode`, `create tables`, `seed`, `write`, `read`.
    pub operation: &'static str,
    /// SQLite's error.
    #[source]
    pub source: rusqlite::Error,
}

/// A connection to the ledger file.
#[derive(Debug)]
pub struct Ledger {
    connection: Connection,
    path: String,
}

/// How long a write waits for another replica's. Long: a replica paused inside a write (a
/// SIGSTOP, a VM pause) holds SQLite's write lock for as long as it is paused — a frozen Consul
/// leader, past 30 s — and the others must wait for it, not die.
const BUSY_TIMEOUT: Duration = Duration::from_secs(300);

/// Switches the file to WAL mode. SQLite answers a journal-mode change that races another
/// connection with "database is locked" without calling the busy handler (replicas that
/// start together open a fresh ledger at once), so retry it here, within the busy timeout.
fn wal_mode(connection: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match connection.execute_batch("PRAGMA journal_mode = WAL;") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            done => return done,
        }
    }
}

/// The error of `operation` on the ledger at `path`.
fn failed<'a>(
    path: &'a str,
    operation: &'static str,
) -> impl Fn(rusqlite::Error) -> LedgerError + Copy + 'a {
    move |source| LedgerError {
        path: path.to_owned(),
        operation,
        source,
    }
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Ledger, LedgerError> {
        let path = path.as_ref().display().to_string();
        let connection = Connection::open(&path).map_err(failed(&path, "open"))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(failed(&path, "open"))?;
        wal_mode(&connection).map_err(failed(&path, "set WAL mode"))?;
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS fence (
                     id INTEGER PRIMARY KEY CHECK (id = 0),
                     highest INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS subscriptions (
                     id TEXT PRIMARY KEY,
                     paid_through INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS journal (
                     seq INTEGER PRIMARY KEY AUTOINCREMENT,
                     t INTEGER NOT NULL,
                     who TEXT NOT NULL,
                     token INTEGER NOT NULL,
                     subscription TEXT,
                     period INTEGER,
                     accepted INTEGER NOT NULL);",
            )
            .map_err(failed(&path, "create tables"))?;
        Ok(Ledger { connection, path })
    }

    fn fail(&self, operation: &'static str) -> impl Fn(rusqlite::Error) -> LedgerError + Copy + '_ {
        failed(&self.path, operation)
    }

    /// Adds `count` subscriptions (`sub-0000`, …) that have paid for no period yet; existing
    /// ones are kept.
    pub fn seed(&self, count: usize) -> Result<(), LedgerError> {
        let mut insert = self
            .connection
            .prepare("INSERT OR IGNORE INTO subscriptions (id, paid_through) VALUES (?1, -1)")
            .map_err(self.fail("seed"))?;
        for i in 0..count {
            insert
                .execute(params![format!("sub-{i:04}")])
                .map_err(self.fail("seed"))?;
        }
        Ok(())
    }

    /// The subscriptions not yet charged for `period`.
    pub fn due(&self, period: i64) -> Result<Vec<String>, LedgerError> {
        let mut select = self
            .connection
            .prepare("SELECT id FROM subscriptions WHERE paid_through < ?1 ORDER BY id")
            .map_err(self.fail("read"))?;
        let rows = select
            .query_map(params![period], |row| row.get(0))
            .map_err(self.fail("read"))?;
        rows.collect::<Result<_, _>>().map_err(self.fail("read"))
    }

    /// Announces the term of `token`: lower tokens are refused from now on. A new leader
    /// opens its term before it reads what is due, so that nothing an old leader writes
    /// afterwards can be taken.
    pub fn open_term(&mut self, who: &str, token: u64) -> Result<Verdict, LedgerError> {
        self.write(who, token, None)
    }

    /// Charges `subscription` for `period` under `token`.
    pub fn charge(
        &mut self,
        who: &str,
        token: u64,
        subscription: &str,
        period: i64,
    ) -> Result<Verdict, LedgerError> {
        self.write(who, token, Some((subscription, period)))
    }

    fn write(
        &mut self,
        who: &str,
        token: u64,
        charge: Option<(&str, i64)>,
    ) -> Result<Verdict, LedgerError> {
        let path = self.path.clone();
        let fail = failed(&path, "write");
        let tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let highest: Option<u64> = tx
            .query_row("SELECT highest FROM fence WHERE id = 0", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(fail)?;
        let verdict = match highest {
            Some(highest) if token < highest => Verdict::Rejected { highest },
            _ => Verdict::Accepted,
        };
        if verdict == Verdict::Accepted {
            tx.execute(
                "INSERT INTO fence (id, highest) VALUES (0, ?1)
                 ON CONFLICT (id) DO UPDATE SET highest = ?1",
                params![token],
            )
            .map_err(fail)?;
            if let Some((subscription, period)) = charge {
                tx.execute(
                    "UPDATE subscriptions SET paid_through = max(paid_through, ?2) WHERE id = ?1",
                    params![subscription, period],
                )
                .map_err(fail)?;
            }
        }
        let (subscription, period) = charge.unzip();
        tx.execute(
            "INSERT INTO journal (t, who, token, subscription, period, accepted)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                elect::history::monotonic_ns(),
                who,
                token,
                subscription,
                period,
                verdict == Verdict::Accepted
            ],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(verdict)
    }

    /// Every write the ledger saw, in its order.
    pub fn journal(&self) -> Result<Vec<Entry>, LedgerError> {
        let mut select = self
            .connection
            .prepare(
                "SELECT seq, t, who, token, subscription, period, accepted FROM journal ORDER BY seq",
            )
            .map_err(self.fail("read"))?;
        let rows = select
            .query_map([], |row| {
                let subscription: Option<String> = row.get(4)?;
                let period: Option<i64> = row.get(5)?;
                Ok(Entry {
                    seq: row.get(0)?,
                    t: row.get(1)?,
                    who: row.get(2)?,
                    token: row.get(3)?,
                    operation: match (subscription, period) {
                        (Some(subscription), Some(period)) => Operation::Charge {
                            subscription,
                            period,
                        },
                        _ => Operation::OpenTerm,
                    },
                    accepted: row.get(6)?,
                })
            })
            .map_err(self.fail("read"))?;
        rows.collect::<Result<_, _>>().map_err(self.fail("read"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_token_is_rejected_once_a_higher_one_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path().join("ledger.db")).unwrap();
        ledger.seed(2).unwrap();
        assert_eq!(ledger.open_term("a", 5).unwrap(), Verdict::Accepted);
        assert_eq!(
            ledger.charge("a", 5, "sub-0000", 1).unwrap(),
            Verdict::Accepted
        );
        assert_eq!(ledger.due(1).unwrap(), vec!["sub-0001".to_owned()]);
        assert_eq!(ledger.open_term("b", 9).unwrap(), Verdict::Accepted);
        assert_eq!(
            ledger.charge("a", 5, "sub-0001", 1).unwrap(),
            Verdict::Rejected { highest: 9 }
        );
        assert_eq!(ledger.due(1).unwrap(), vec!["sub-0001".to_owned()]);
        let journal = ledger.journal().unwrap();
        assert_eq!(journal.len(), 4);
        assert!(!journal[3].accepted);
        assert_eq!(journal[3].who, "a");
        assert!(journal.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    /// Replicas start together and open one fresh ledger at once (the fault suite's first
    /// round): each open must wait for the others, never fail with "database is locked".
    #[test]
    fn replicas_open_and_seed_a_fresh_ledger_at_once() {
        for attempt in 0..30 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ledger.db");
            let start = std::sync::Arc::new(std::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        Ledger::open(&path).and_then(|ledger| ledger.seed(40))
                    })
                })
                .collect();
            for opener in openers {
                if let Err(error) = opener.join().unwrap() {
                    panic!("attempt {attempt}: {error}");
                }
            }
        }
    }
}
