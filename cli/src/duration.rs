//! Durations as the CLI reads them: `250ms`, `30s`, `5m`, `1h` (humantime), or a bare number
//! of milliseconds.

use std::time::Duration;

/// The longest TTL or wait the component accepts (about 31.7 years).
pub const MAX: Duration = Duration::from_millis(dlock_host::contract::MAX_DURATION_MS);

/// Parses a positive duration of at most [`MAX`], in whole milliseconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let d = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let ms: u64 = text
            .parse()
            .map_err(|_| format!("{text:?} is too large a number of milliseconds"))?;
        Duration::from_millis(ms)
    } else {
        humantime::parse_duration(text).map_err(|e| {
            format!("{text:?} is not a duration ({e}); write it like 250ms, 30s, 5m or 1h")
        })?
    };
    if d.is_zero() {
        return Err(format!("{text:?} is zero; a positive duration is needed"));
    }
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!("{text:?} is finer than a millisecond"));
    }
    if d > MAX {
        return Err(format!(
            "{text:?} is longer than the maximum of {}",
            humantime::format_duration(MAX)
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_milliseconds() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1500"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1s 500ms"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn bad_durations_say_why() {
        for (input, why) in [
            ("0", "zero"),
            ("0s", "zero"),
            ("-5s", "not a duration"),
            ("-5", "not a duration"),
            ("", "not a duration"),
            ("soon", "not a duration"),
            ("NaN", "not a duration"),
            ("1.5", "not a duration"),
            ("99999999999999999999999", "too large"),
            ("100000y", "longer than the maximum"),
            ("1000000000001", "longer than the maximum"),
            ("10us", "finer than a millisecond"),
        ] {
            let err = parse(input).unwrap_err();
            assert!(err.contains(why), "{input:?}: {err}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_is_a_bounded_positive_duration_or_a_reason(text in ".{0,40}") {
            match parse(&text) {
                Ok(d) => {
                    prop_assert!(d >= Duration::from_millis(1) && d <= MAX);
                    prop_assert_eq!(d.subsec_nanos() % 1_000_000, 0);
                }
                Err(reason) => prop_assert!(!reason.is_empty()),
            }
        }

        #[test]
        fn bare_numbers_are_milliseconds(ms in 1u64..=1_000_000_000_000) {
            prop_assert_eq!(parse(&ms.to_string()), Ok(Duration::from_millis(ms)));
        }
    }
}
