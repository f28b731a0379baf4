//! The words of the contract as types: election names, candidates, leaders, fencing tokens.

use std::fmt;
use std::str::FromStr;

use crate::config_error::ConfigError;

/// Longest election name, in characters.
pub const MAX_ELECTION_LEN: usize = 128;
/// Largest candidate value, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;
/// Longest candidate id, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// The name of an election: 1–128 characters of `[A-Za-z0-9._-]`.
///
/// The name becomes part of a key, znode path or file name in every store, which is why the
/// alphabet is small.
///
/// ```
/// use elect_core::ElectionName;
/// let name: ElectionName = "billing".parse().unwrap();
/// assert_eq!(name.as_str(), "billing");
/// let err = "bill/ing".parse::<ElectionName>().unwrap_err();
/// assert!(err.to_string().contains("'/'"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ElectionName(String);

impl ElectionName {
    /// Checks `name` and names the field it came from in the error.
    pub fn parse_field(field: &str, name: &str) -> Result<Self, ConfigError> {
        check_length(
            field,
            name,
            "an election name",
            MAX_ELECTION_LEN,
            "characters",
        )?;
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(ConfigError::new(
                field,
                name,
                format!(
                    "character {bad:?} is not allowed in an election name (use A-Z a-z 0-9 . _ -)"
                ),
            ));
        }
        if name == "." || name == ".." {
            return Err(ConfigError::new(
                field,
                name,
                "`.` and `..` are not election names",
            ));
        }
        Ok(ElectionName(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ElectionName {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ElectionName::parse_field("election", s)
    }
}

impl fmt::Display for ElectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One participant of an election: a unique id and a value followers may read.
///
/// ```
/// use elect_core::Candidate;
/// let me = Candidate::new("billing-1", b"10.0.0.1:8080".to_vec()).unwrap();
/// assert_eq!(me.id(), "billing-1");
/// let anyone = Candidate::generated(); // <hostname>-<pid>-<random>
/// assert!(anyone.id().contains('-'));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    id: String,
    value: Vec<u8>,
}

impl Candidate {
    /// A candidate with the given id and value; checks their sizes and the id's characters.
    pub fn new(id: impl Into<String>, value: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        let id = id.into();
        let value = value.into();
        check_id("id", &id)?;
        check_value("value", &value)?;
        Ok(Candidate { id, value })
    }

    /// A candidate named `<hostname>-<pid>-<random>` with the id as its value.
    pub fn generated() -> Self {
        let id = default_candidate_id();
        Candidate {
            value: id.clone().into_bytes(),
            id,
        }
    }

    /// The candidate's id, unique among the candidates of an election.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The bytes followers read while this candidate leads.
    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

/// `<hostname>-<pid>-<4 random hex digits>`: unique enough for replicas that restart.
pub fn default_candidate_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let host: String = host
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// Checks a candidate id: 1–256 bytes of printable ASCII without spaces.
pub fn check_id(field: &str, id: &str) -> Result<(), ConfigError> {
    check_length(field, id, "a candidate id", MAX_ID_LEN, "bytes")?;
    if let Some(bad) = id.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(ConfigError::new(
            field,
            id,
            format!(
                "character {bad:?} is not allowed in a candidate id (printable ASCII, no spaces)"
            ),
        ));
    }
    Ok(())
}

/// Checks that `text`, `what` (e.g. "a candidate id"), is not empty and at most `max` bytes
/// long (`unit` says how a user counts them).
fn check_length(
    field: &str,
    text: &str,
    what: &str,
    max: usize,
    unit: &str,
) -> Result<(), ConfigError> {
    if text.is_empty() {
        return Err(ConfigError::new(
            field,
            text,
            format!("{what} must not be empty"),
        ));
    }
    if text.len() > max {
        return Err(ConfigError::new(
            field,
            text,
            format!(
                "{what} has at most {max} {unit}, this one has {}",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a candidate value: at most 64 KiB.
pub fn check_value(field: &str, value: &[u8]) -> Result<(), ConfigError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(ConfigError::new(
            field,
            format!("<{} bytes>", value.len()),
            format!("a candidate value has at most {MAX_VALUE_LEN} bytes"),
        ));
    }
    Ok(())
}

/// A number fixed for one term and strictly greater for every later term of the same
/// election, taken from the store's own revision counter when the claim was made.
///
/// Hand it to every downstream system the leader writes to; a system that remembers the
/// highest token it has seen and rejects lower ones is safe from a leader that woke up from
/// a pause after its term ended.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

impl FencingToken {
    /// The token as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who leads an election now, as the store says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The leading candidate's id.
    pub id: String,
    /// The leading candidate's value (see [`Candidate::value`]).
    pub value: Vec<u8>,
    /// The current term's fencing token.
    pub token: FencingToken,
}

/// One entry of [`crate::Elector::candidates`]: a candidate the store shows for an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateInfo {
    /// The candidate's id.
    pub id: String,
    /// The candidate's value.
    pub value: Vec<u8>,
    /// True for the one that leads.
    pub leading: bool,
}
