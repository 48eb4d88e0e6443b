//! `date`, `timestamp` and `timestamptz` values in cpi's own (ISO 8601)
//! spellings, as PostgreSQL's binary COPY wants them: days and
//! microseconds since 2000-01-01.

use super::value::named_value;

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_DAYS_FROM_UNIX: i64 = 10957;

/// The verdict on a value that is no date to parse: `infinity` is `max`,
/// `-infinity` `min`, and a leading `+` is refused (PostgreSQL knows
/// `infinity` and `-infinity`, not `+infinity`). `None`: parse the date.
fn infinite_or_signed<T>(t: &str, min: T, max: T) -> Option<Option<T>> {
    if t.starts_with('+') {
        return Some(None);
    }
    named_value(t, &[("infinity", 1)]).map(|code| Some(if code == 1 { max } else { min }))
}

/// Days since 2000-01-01 of `YYYY-MM-DD` (also `YYYY/MM/DD`, `YYYYMMDD`),
/// or ±infinity.
pub fn parse_date_days(t: &str) -> Option<i32> {
    if let Some(v) = infinite_or_signed(t, i32::MIN, i32::MAX) {
        return v;
    }
    let b = t.as_bytes();
    let (y, m, d) = match b.len() {
        10 if (b[4] == b'-' && b[7] == b'-') || (b[4] == b'/' && b[7] == b'/') => {
            (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?)
        }
        8 => (num(&b[0..4])?, num(&b[4..6])?, num(&b[6..8])?),
        _ => return None,
    };
    // PostgreSQL has no year 0 (1 BC comes before 1 AD).
    if y == 0 {
        return None;
    }
    Some(days_from_civil(y, m, d)? as i32)
}

fn num(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |a, d| a * 10 + (d - b'0') as i64))
}

/// Days since 2000-01-01; `None` for an impossible date.
fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    let date = chrono::NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)?;
    Some(
        date.signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?)
            .num_days()
            - PG_EPOCH_DAYS_FROM_UNIX,
    )
}

/// Microseconds since 2000-01-01 00:00 of an ISO 8601 timestamp:
/// `YYYY-MM-DD[( |T)HH:MM[:SS[.frac]]][Z|±HH[[:]MM]]`. An offset is applied
/// for timestamptz and ignored for timestamp (as PostgreSQL does); a
/// timestamptz without offset is UTC (the import session runs in UTC).
pub fn parse_timestamp_us(t: &str, with_tz: bool) -> Option<i64> {
    if let Some(v) = infinite_or_signed(t, i64::MIN, i64::MAX) {
        return v;
    }
    let b = t.as_bytes();
    if b.len() < 10 {
        return None;
    }
    // `get`: byte 10 may fall inside a multi-byte character (found by fuzzing).
    let days = parse_date_days(t.get(..10)?)? as i64;
    let mut i = 10;
    let mut us: i64 = 0;
    if i < b.len() && (b[i] == b' ' || b[i] == b'T' || b[i] == b't') {
        i += 1;
        let h = num(b.get(i..i + 2)?)?;
        if b.get(i + 2) != Some(&b':') {
            return None;
        }
        let mi = num(b.get(i + 3..i + 5)?)?;
        i += 5;
        let mut s = 0;
        if b.get(i) == Some(&b':') {
            s = num(b.get(i + 1..i + 3)?)?;
            i += 3;
            if b.get(i) == Some(&b'.') {
                i += 1;
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let frac = &t[start..i];
                // Beyond microseconds PostgreSQL rounds through a double:
                // the server decides those.
                if frac.is_empty() || frac.len() > 6 {
                    return None;
                }
                let mut digits: Vec<u8> = frac.bytes().collect();
                while digits.len() < 6 {
                    digits.push(b'0');
                }
                us += num(&digits)?;
            }
        }
        if h > 24 || mi > 59 || s > 60 || (h == 24 && (mi > 0 || s > 0 || us > 0)) {
            return None;
        }
        us += (h * 3600 + mi * 60 + s) * 1_000_000;
    }
    // Optional offset.
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    let mut offset_s: i64 = 0;
    if i < b.len() {
        let rest = &t[i..];
        if rest.eq_ignore_ascii_case("z") || rest.eq_ignore_ascii_case("utc") {
        } else {
            let sign = match b[i] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = &b[i + 1..];
            let (oh, om) = match o.len() {
                2 => (num(o)?, 0),
                4 => (num(&o[..2])?, num(&o[2..])?),
                5 if o[2] == b':' => (num(&o[..2])?, num(&o[3..])?),
                _ => return None,
            };
            if oh > 15 || om > 59 {
                return None;
            }
            offset_s = sign * (oh * 3600 + om * 60);
        }
    }
    let local = days.checked_mul(86_400_000_000)?.checked_add(us)?;
    Some(if with_tz {
        local - offset_s * 1_000_000
    } else {
        local
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_timestamps() {
        assert_eq!(parse_date_days("-infinity"), Some(i32::MIN));
        assert_eq!(parse_timestamp_us("Infinity", true), Some(i64::MAX));
        assert_eq!(parse_date_days("2000-01-01"), Some(0));
        assert_eq!(parse_date_days("2000-01-02"), Some(1));
        assert_eq!(parse_date_days("1999-12-31"), Some(-1));
        assert_eq!(parse_date_days("2024-02-30"), None);
        assert_eq!(parse_date_days("20000102"), Some(1));
        assert_eq!(
            parse_timestamp_us("2000-01-01 00:00:01", false),
            Some(1_000_000)
        );
        assert_eq!(
            parse_timestamp_us("2000-01-01T01:00:00+01:00", true),
            Some(0)
        );
        assert_eq!(
            parse_timestamp_us("2000-01-01T01:00:00+01:00", false),
            Some(3_600_000_000)
        );
        assert_eq!(
            parse_timestamp_us("2000-01-01 00:00:00.5Z", true),
            Some(500_000)
        );
        assert_eq!(
            parse_timestamp_us("2000-01-01 00:00:00.0000005", true),
            None
        );
        assert_eq!(parse_timestamp_us("2000-01-01 25:00", true), None);
        assert_eq!(parse_timestamp_us("yesterday", true), None);
        assert_eq!(
            parse_timestamp_us("2000-01-01 00:00 -0230", true),
            Some(9_000_000_000)
        );
    }

    #[test]
    fn a_multibyte_character_at_byte_ten_is_no_timestamp() {
        // Found by the copy_encoders fuzz target: it used to panic.
        assert_eq!(parse_timestamp_us("2024-01-0\u{e9}", true), None);
        assert_eq!(
            parse_timestamp_us("\u{fffd}\u{fffd}\u{fffd}\u{fffd}", false),
            None
        );
    }
}
