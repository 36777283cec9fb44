//! A workspace's time zone: IANA names checked against the tz database
//! compiled into the binary (the host's /usr/share/zoneinfo may be missing),
//! and the one way pages format an instant: local time with the zone named.

use time::OffsetDateTime;

use crate::error::{AppError, AppResult};

pub const DEFAULT_ZONE: &str = "UTC";

/// A validated IANA zone, ready to format instants.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: jiff::tz::TimeZone,
}

impl Default for Zone {
    fn default() -> Self {
        Zone::utc()
    }
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: DEFAULT_ZONE.to_owned(),
            tz: jiff::tz::TimeZone::UTC,
        }
    }

    /// The zone named `input` (case-insensitive, stored by its canonical
    /// spelling), or 422 on `field`.
    pub fn parse(field: &str, input: &str) -> AppResult<Zone> {
        let trimmed = input.trim();
        let unknown = || {
            AppError::validation(
                field,
                "unknown time zone; use an IANA name such as Europe/Berlin or UTC",
            )
        };
        // The database would also accept path-like names; IANA names are
        // short, printable ASCII.
        if trimmed.is_empty()
            || trimmed.len() > 64
            || !trimmed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
        {
            return Err(unknown());
        }
        let tz = jiff::tz::db().get(trimmed).map_err(|_| unknown())?;
        let name = tz.iana_name().unwrap_or(trimmed).to_owned();
        Ok(Zone { name, tz })
    }

    /// A stored name: a row that somehow holds an unknown zone shows UTC
    /// rather than failing the page.
    pub fn from_stored(name: &str) -> Zone {
        Zone::parse("time_zone", name).unwrap_or_else(|_| Zone::utc())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn local(&self, t: &OffsetDateTime) -> Option<jiff::ZonedDateTime> {
        let ts = jiff::Timestamp::new(t.unix_timestamp(), 0).ok()?;
        Some(ts.to_zoned_datetime(self.tz.clone()))
    }

    /// `2026-12-03 10:15 Europe/Berlin`.
    pub fn at(&self, t: &OffsetDateTime) -> String {
        self.format(t, "%Y-%m-%d %H:%M")
    }

    /// `10:15:07 Europe/Berlin` (log lines).
    pub fn clock(&self, t: &OffsetDateTime) -> String {
        self.format(t, "%H:%M:%S")
    }

    /// `2026-12-03 Europe/Berlin`: the day as the workspace sees it.
    pub fn day(&self, t: &OffsetDateTime) -> String {
        self.format(t, "%Y-%m-%d")
    }

    /// The calendar day `t` falls on in this zone (metrics days are days
    /// in the workspace's zone).
    pub fn date_of(&self, t: &OffsetDateTime) -> time::Date {
        self.local(t)
            .and_then(|z| {
                let d = z.date();
                let month = time::Month::try_from(u8::try_from(d.month()).ok()?).ok()?;
                time::Date::from_calendar_date(
                    i32::from(d.year()),
                    month,
                    u8::try_from(d.day()).ok()?,
                )
                .ok()
            })
            .unwrap_or_else(|| t.date())
    }

    pub fn at_opt(&self, t: &Option<OffsetDateTime>, none: &str) -> String {
        t.as_ref().map_or_else(|| none.to_owned(), |t| self.at(t))
    }

    fn format(&self, t: &OffsetDateTime, pattern: &str) -> String {
        match self.local(t) {
            Some(z) => format!("{} {}", z.strftime(pattern), self.name),
            None => format!("{t}"),
        }
    }
}

/// Every zone name the database knows, sorted, for the settings form.
pub fn all_zone_names() -> Vec<String> {
    let mut names: Vec<String> = jiff::tz::db()
        .available()
        .map(|n| n.as_str().to_owned())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_in_the_zone_with_its_name() {
        let z = Zone::parse("time_zone", "europe/berlin").unwrap();
        assert_eq!(z.name(), "Europe/Berlin");
        let winter = datetime!(2026-12-03 09:15:00 UTC);
        assert_eq!(z.at(&winter), "2026-12-03 10:15 Europe/Berlin");
        let summer = datetime!(2026-07-01 22:30:00 UTC);
        assert_eq!(z.at(&summer), "2026-07-02 00:30 Europe/Berlin");
        assert_eq!(z.day(&summer), "2026-07-02 Europe/Berlin");
        assert_eq!(Zone::utc().at(&winter), "2026-12-03 09:15 UTC");
    }

    #[test]
    fn dates_in_the_zone() {
        let tokyo = Zone::parse("time_zone", "Asia/Tokyo").unwrap();
        let late = datetime!(2026-12-31 20:00:00 UTC);
        assert_eq!(tokyo.date_of(&late), time::macros::date!(2027 - 01 - 01));
        assert_eq!(
            Zone::utc().date_of(&late),
            time::macros::date!(2026 - 12 - 31)
        );
    }

    #[test]
    fn refuses_unknown_zones() {
        for bad in [
            "Mars/Olympus",
            "",
            "../../etc/passwd",
            "Europe/Berlin\0",
            "x".repeat(100).as_str(),
        ] {
            let err = Zone::parse("time_zone", bad).unwrap_err();
            assert_eq!(err.status(), 422, "{bad:?}");
        }
        assert_eq!(Zone::from_stored("Mars/Olympus").name(), "UTC");
        assert!(all_zone_names().iter().any(|n| n == "Asia/Tokyo"));
    }
}
