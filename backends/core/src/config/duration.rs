//! Durations as people write them in config files and URLs: `500ms`, `10s`, `2m`, `1h`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses `<whole number><unit>` with unit `ms`, `s`, `m` or `h`; the error says what is wrong
/// (the caller adds the field and the value).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a duration must not be empty (write e.g. 10s or 500ms)".to_owned());
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("a duration needs a unit: write {text}s or {text}ms"))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err("a duration starts with a whole number (write e.g. 10s or 500ms)".to_owned());
    }
    let number: u64 = number
        .parse()
        .map_err(|_| "the number is too large for a duration".to_owned())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("unknown duration unit {unit:?}: use ms, s, m or h")),
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| "the number is too large for a duration".to_owned())
}

/// Formats a duration the way [`parse_duration`] reads it back.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis % 3_600_000 == 0 && millis > 0 {
        format!("{}h", millis / 3_600_000)
    } else if millis % 60_000 == 0 && millis > 0 {
        format!("{}m", millis / 60_000)
    } else if millis % 1_000 == 0 {
        format!("{}s", millis / 1_000)
    } else {
        format!("{millis}ms")
    }
}

/// `#[serde(deserialize_with = ...)]` for an optional duration written as text.
pub(crate) fn deserialize_opt<'de, D>(deserializer: D) -> Result<Option<Duration>, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    parse_duration(&text)
        .map(Some)
        .map_err(|problem| serde::de::Error::custom(format!("{problem} (got {text:?})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_round_trips() {
        for (text, millis) in [
            ("500ms", 500),
            ("10s", 10_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("0s", 0),
        ] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(parsed, Duration::from_millis(millis), "{text}");
            assert_eq!(parse_duration(&format_duration(parsed)).unwrap(), parsed);
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for text in [
            "",
            "10",
            "s",
            "10sec",
            "1.5s",
            "-1s",
            "99999999999999999999h",
            "1000000000000000h",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} should be refused");
        }
    }
}
