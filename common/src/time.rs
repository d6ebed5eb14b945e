//! Wall-clock time as the daemon's records spell it (RFC 3339, UTC), without a clock crate.
//!
//! Every program of the workspace formats time here, so the store, the pane files and the
//! events agree on one spelling.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; a clock before 1970 is a broken clock, read as the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Now with seconds: `2025-11-26T10:04:05Z`.
pub fn now_rfc3339() -> String {
    rfc3339(now_ms() / 1000)
}

/// Now with milliseconds, the store's format: `2025-11-26T10:04:05.123Z`.
pub fn now_rfc3339_ms() -> String {
    rfc3339_ms(now_ms())
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    let (date, rem) = date_and_rest(secs);
    format!(
        "{date}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_ms(ms: u64) -> String {
    let (date, rem) = date_and_rest(ms / 1000);
    format!(
        "{date}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

fn date_and_rest(secs: u64) -> (String, u64) {
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    (format!("{year:04}-{month:02}-{day:02}"), secs % 86_400)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_to_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_622), (2026, 6, 18));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(rfc3339(1_704_067_199), "2023-12-31T23:59:59Z");
        assert_eq!(rfc3339(1_764_151_445), "2025-11-26T10:04:05Z");
        assert_eq!(rfc3339_ms(1_764_151_445_007), "2025-11-26T10:04:05.007Z");
        assert_eq!(rfc3339_ms(999), "1970-01-01T00:00:00.999Z");
    }

    #[test]
    fn now_is_well_formed() {
        let now = now_rfc3339_ms();
        assert_eq!(now.len(), "2025-11-26T10:04:05.123Z".len(), "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
    }
}
