//! Durations as people write them in config files and URLs, in Go's syntax (`consul lock
//! -timeout`, `etcdctl --dial-timeout`): `500ms`, `10s`, `1.5s`, `1m30s`, `2h`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses a duration as Go's `time.ParseDuration` does, without a sign: one or more
/// `<number><unit>`, the number with an optional fraction, the unit `ns`, `us` (`µs`), `ms`,
/// `s`, `m` or `h`; `0` alone is zero. The error says what is wrong (the caller adds the field
/// and the value).
///
/// ```
/// use elect_core::config::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(parse_duration("10").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a duration must not be empty (write e.g. 10s, 1.5s or 1m30s)".to_owned());
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let too_large = || "the number is too large for a duration".to_owned();
    let mut nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("a duration needs a unit: write {text}s or {text}ms"))?;
        let (number, tail) = rest.split_at(number_end);
        if number.is_empty() {
            return Err(
                "a duration starts with a number (write e.g. 10s, 1.5s or 1m30s)".to_owned(),
            );
        }
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "unknown duration unit {unit:?}: use ns, us, ms, s, m or h"
                ))
            }
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
            return Err(format!(
                "{number:?} is not a number: write e.g. 10s, 1.5s or 1m30s"
            ));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        let mut value = whole.checked_mul(per_unit).ok_or_else(too_large)?;
        // The fraction, to the nanosecond (digits beyond that are dropped, as Go does).
        let fraction = &fraction[..fraction.len().min(18)];
        if !fraction.is_empty() {
            let scale = 10u128.pow(fraction.len() as u32);
            let parts: u128 = fraction.parse().map_err(|_| too_large())?;
            value += parts * per_unit / scale;
        }
        nanos = nanos.checked_add(value).ok_or_else(too_large)?;
        rest = next;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_large())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Formats a duration the way [`parse_duration`] reads it back.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(3_600_000) && millis > 0 {
        format!("{}h", millis / 3_600_000)
    } else if millis.is_multiple_of(60_000) && millis > 0 {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1_000) {
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
            ("0", 0),
            ("1.5s", 1_500),
            ("1m30s", 90_000),
            ("1h2m3s4ms", 3_723_004),
            (".5s", 500),
        ] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(parsed, Duration::from_millis(millis), "{text}");
            assert_eq!(parse_duration(&format_duration(parsed)).unwrap(), parsed);
        }
    }

    #[test]
    fn reads_sub_millisecond_units() {
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(
            parse_duration("1µs500ns").unwrap(),
            Duration::from_nanos(1_500)
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for text in [
            "",
            "10",
            "s",
            "10sec",
            "-1s",
            "1..5s",
            "1.s5",
            "s10",
            "1m 30s",
            "99999999999999999999h",
            "10000000000000000h",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} should be refused");
        }
    }
}
