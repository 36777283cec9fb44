//! Delta bounds. Providers write update times in many shapes (`Z`,
//! `+00:00`, Jira's `+0000`, dates, `YYYYMMDD`, epoch seconds), so
//! high-water marks are parsed, compared as instants and stored in one
//! UTC form — never compared as text, where `+0100` sorts wrongly.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// A provider timestamp as an instant, if it is one.
pub fn parse_instant(raw: &str) -> Option<OffsetDateTime> {
    let s = raw.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.to_offset(UtcOffset::UTC));
    }
    // `2026-11-20T10:00:00.000+0000`: an offset without a colon. The cut is
    // made only on a character boundary: cursor values are provider data.
    if let Some(fixed) = with_offset_colon(s)
        && let Ok(t) = OffsetDateTime::parse(&fixed, &Rfc3339)
    {
        return Some(t.to_offset(UtcOffset::UTC));
    }
    // No offset at all: taken as UTC.
    if let Ok(t) = PrimitiveDateTime::parse(
        s,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ) {
        return Some(t.assume_utc());
    }
    if let Ok(d) = Date::parse(s, format_description!("[year]-[month]-[day]")) {
        return Some(d.midnight().assume_utc());
    }
    if s.len() == 8
        && let Ok(d) = Date::parse(s, format_description!("[year][month][day]"))
    {
        return Some(d.midnight().assume_utc());
    }
    // Epoch seconds (10 digits) or milliseconds (13).
    if s.bytes().all(|b| b.is_ascii_digit()) && (9..=13).contains(&s.len()) {
        let n: i64 = s.parse().ok()?;
        let secs = if s.len() >= 12 { n / 1000 } else { n };
        return OffsetDateTime::from_unix_timestamp(secs).ok();
    }
    None
}

/// `…+0000` → `…+00:00`; `None` unless `s` ends in a sign and four ASCII digits.
fn with_offset_colon(s: &str) -> Option<String> {
    let cut = s.len().checked_sub(5)?;
    let (head, tail) = (s.get(..cut)?, s.get(cut..)?);
    let (sign, digits) = tail.split_at_checked(1)?;
    let (hours, minutes) = digits.split_at_checked(2)?;
    let well_formed = matches!(sign, "+" | "-") && digits.bytes().all(|b| b.is_ascii_digit());
    well_formed.then(|| format!("{head}{sign}{hours}:{minutes}"))
}

/// The stored form of a mark: UTC, whole seconds, `Z`.
pub fn canonical(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

/// The later of two marks; unparseable ones lose.
pub fn later(a: Option<&str>, b: Option<&str>) -> Option<String> {
    let parsed = |m: Option<&str>| m.and_then(parse_instant);
    match (parsed(a), parsed(b)) {
        (Some(x), Some(y)) => Some(canonical(x.max(y))),
        (Some(x), None) | (None, Some(x)) => Some(canonical(x)),
        (None, None) => None,
    }
}

/// The value a delta read sends, from the mark, moved back by the
/// lookback, in the object's `deltaFormat`. Truncation always rounds
/// down: reading a record twice is harmless, missing one is not.
pub fn since_value(mark: OffsetDateTime, lookback: Duration, format: Option<&str>) -> String {
    // A mark near the start of time (provider data) must not underflow.
    let at = mark.checked_sub(lookback).unwrap_or(mark);
    match format {
        Some("date") => at.date().to_string(),
        Some("epoch_seconds") => at.unix_timestamp().to_string(),
        _ => canonical(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn provider_timestamps_normalise_to_utc() {
        let want = datetime!(2026-11-20 09:00:00 UTC);
        for raw in [
            "2026-11-20T09:00:00Z",
            "2026-11-20T10:00:00+01:00",
            "2026-11-20T10:00:00.000+0100",
            "2026-11-20T09:00:00.000+0000",
            "2026-11-20T09:00:00",
            "1795165200",
            "1795165200000",
        ] {
            assert_eq!(parse_instant(raw), Some(want), "{raw}");
        }
        assert_eq!(
            parse_instant("20261120"),
            Some(datetime!(2026-11-20 00:00:00 UTC))
        );
        assert_eq!(
            parse_instant("2026-11-20"),
            Some(datetime!(2026-11-20 00:00:00 UTC))
        );
        assert_eq!(parse_instant("yesterday"), None);
        assert_eq!(parse_instant(""), None);
    }

    #[test]
    fn marks_compare_as_instants_not_text() {
        // As text "…10:00:00+0100" > "…09:30:00Z"; as instants it is earlier.
        assert_eq!(
            later(
                Some("2026-11-20T10:00:00.000+0100"),
                Some("2026-11-20T09:30:00Z")
            )
            .as_deref(),
            Some("2026-11-20T09:30:00Z")
        );
        assert_eq!(
            later(None, Some("2026-11-20T09:30:00.750Z")).as_deref(),
            Some("2026-11-20T09:30:00Z")
        );
        assert_eq!(later(Some("junk"), None), None);
    }

    #[test]
    fn since_applies_lookback_and_format() {
        let mark = datetime!(2026-11-20 00:30:00 UTC);
        assert_eq!(
            since_value(mark, Duration::hours(1), Some("rfc3339")),
            "2026-11-19T23:30:00Z"
        );
        assert_eq!(
            since_value(mark, Duration::hours(1), Some("date")),
            "2026-11-19"
        );
        assert_eq!(
            since_value(mark, Duration::ZERO, Some("epoch_seconds")),
            "1795134600"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::testing::header_text;
    use proptest::prelude::*;

    proptest! {
        // Cursor values are provider data: any text parses or is refused.
        #[test]
        fn any_cursor_text_parses_or_is_refused(raw in header_text()) {
            if let Some(t) = parse_instant(&raw) {
                let _ = since_value(t, Duration::days(30), None);
                let _ = since_value(t, Duration::days(30), Some("date"));
                prop_assert!(parse_instant(&canonical(t)).is_some());
            }
            let _ = later(Some(&raw), Some("2026-11-20T00:00:00Z"));
        }

        #[test]
        fn multibyte_text_before_an_offset_never_panics(head in "\\PC{0,8}", tail in "[+-]?[0-9é✓]{0,5}") {
            let _ = parse_instant(&format!("{head}{tail}"));
        }
    }

    #[test]
    fn the_first_instant_moved_back_does_not_underflow() {
        let first = time::PrimitiveDateTime::MIN.assume_utc();
        assert_eq!(
            since_value(first, Duration::days(3), Some("date")),
            first.date().to_string()
        );
    }

    #[test]
    fn non_ascii_before_the_offset_is_refused_not_a_panic() {
        // Five bytes from the end falls inside `é` (2 bytes): this panicked.
        assert_eq!(parse_instant("2026-11-20T10:00:00é0000"), None);
        assert_eq!(parse_instant("x✓+0100"), None);
    }
}
