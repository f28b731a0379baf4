//! Where an election lives in ZooKeeper — Curator's `LeaderLatch` layout, so that a Curator
//! latch at `/<election>` (and a kazoo `Election` told about `-latch-` names) meets `elect`.
//!
//! | znode | data |
//! | --- | --- |
//! | `<root>/<election>` | the election's directory (persistent) |
//! | `<root>/<election>/_c_<uuid v4>-latch-<10-digit sequence>` | a claim, ephemeral sequential, data = candidate id; the lowest sequence leads |
//! | `<root>/<election>:v/<uuid>` | the candidate's value when it differs from its id, written before the claim so that nobody sees a claim without its value (ours only: `:` cannot occur in an election name) |

/// The znodes of one election.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// `<root>/<election>`.
    pub(crate) dir: String,
    /// `<root>/<election>:v`.
    pub(crate) values: String,
}

impl Layout {
    pub(crate) fn new(root: &str, election: &str) -> Self {
        let root = root.trim_end_matches('/');
        Layout {
            dir: format!("{root}/{election}"),
            values: format!("{root}/{election}:v"),
        }
    }

    pub(crate) fn claim(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }

    /// The value znode of the claim named `name`, if it is one of ours (Curator-named).
    pub(crate) fn value_of(&self, name: &str) -> Option<String> {
        uuid_of(name).map(|uuid| self.value(uuid))
    }

    pub(crate) fn value(&self, uuid: &str) -> String {
        format!("{}/{uuid}", self.values)
    }
}

/// The prefix of a claim name before ZooKeeper appends the sequence.
pub(crate) fn claim_prefix(uuid: &str) -> String {
    format!("_c_{uuid}-latch-")
}

/// The UUID in a protected claim's name `_c_<uuid>-latch-<seq>`.
pub(crate) fn uuid_of(name: &str) -> Option<&str> {
    let uuid = name.strip_prefix("_c_")?.get(..36)?;
    (uuid.len() == 36 && uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then_some(uuid)
}

/// A random UUID v4 in its 36-character form, as Curator's protected mode writes it.
pub(crate) fn uuid_v4() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The sequence ZooKeeper appended: the trailing digits of a child's name. This orders
/// Curator's `…-latch-0000000007`, kazoo's `…__lock__0000000007` and go-zookeeper's names alike.
pub(crate) fn sequence(name: &str) -> Option<u64> {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    name[name.len() - digits..].parse().ok()
}

/// The children that are claims, lowest sequence first.
pub(crate) fn sorted_claims(mut children: Vec<String>) -> Vec<String> {
    children.retain(|c| sequence(c).is_some());
    children.sort_by_key(|c| sequence(c));
    children
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_sort_by_their_sequence_whatever_wrote_them() {
        let children = vec![
            "_c_5f0e…-latch-0000000012".to_owned(),
            "a3c1e2__lock__0000000010".to_owned(),
            "_c_0000-latch-0000000011".to_owned(),
            "not-a-claim".to_owned(),
        ];
        assert_eq!(
            sorted_claims(children),
            [
                "a3c1e2__lock__0000000010",
                "_c_0000-latch-0000000011",
                "_c_5f0e…-latch-0000000012"
            ]
        );
    }

    #[test]
    fn uuids_are_v4_in_curators_form() {
        let uuid = uuid_v4();
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.as_bytes()[14], b'4');
        assert!(matches!(uuid.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        assert_ne!(uuid, uuid_v4());
    }
}
