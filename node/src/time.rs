//! Times as clients send them: unix time whose unit is guessed from its digit count (13 digits
//! ms, 16 µs, 19 ns, otherwise seconds), `YYYYMMDD` dates, RFC 3339
//! (`2024-05-01T12:00:00.5Z`, `2024-05-01T14:00:00+02:00`), and `now`, `now-1h`, `now+30m`;
//! and durations (`15s`, `1h30m`, or plain seconds, `0.5`).

use firn_storage::Nanos;

pub fn now() -> Nanos {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Nanos(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
}

/// Parses a client time relative to `now`.
pub fn parse_time(text: &str, now: Nanos) -> Result<Nanos, String> {
    if let Some(t) = rfc3339(text.trim()) {
        return t;
    }
    let cleaned: String = text
        .chars()
        .filter(|c| !matches!(c, '_' | ',' | ' '))
        .collect();
    if cleaned.is_empty() {
        return Err("empty time".into());
    }
    if cleaned.chars().all(|c| c.is_ascii_digit()) {
        if cleaned.len() == 8
            && let Some(t) = date(&cleaned)
        {
            return Ok(t);
        }
        let value: i64 = cleaned
            .parse()
            .map_err(|_| format!("{text:?} is out of range"))?;
        let nanos = match cleaned.len() {
            13 => value.checked_mul(1_000_000),
            16 => value.checked_mul(1_000),
            19 => Some(value),
            _ => value.checked_mul(1_000_000_000),
        };
        return nanos
            .map(Nanos)
            .ok_or_else(|| format!("{text:?} is out of range"));
    }
    let rest = cleaned.strip_prefix("now").ok_or_else(|| {
        format!("{text:?} is not a unix time, a YYYYMMDD date or now[+-]<n><unit>")
    })?;
    let mut total = now.0;
    let mut rest = rest;
    while !rest.is_empty() {
        let sign = match rest.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return Err(format!("{text:?}: expected + or - after now")),
        };
        rest = &rest[1..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?}: expected a number"))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
        let unit = unit_nanos(&rest[..unit_len]).ok_or_else(|| {
            format!(
                "{text:?}: unknown unit {:?} (s, m, h, d, w, M, y)",
                &rest[..unit_len]
            )
        })?;
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|d| total.checked_add(sign * d))
            .ok_or_else(|| format!("{text:?} is out of range"))?;
    }
    Ok(Nanos(total))
}

/// Nanoseconds in a unit of a relative time or duration.
fn unit_nanos(unit: &str) -> Option<i64> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 604_800_000_000_000,
        "M" | "mon" => 30 * 86_400_000_000_000,
        "y" => 365 * 86_400_000_000_000,
        _ => return None,
    })
}

/// Parses a duration: `15s`, `1h30m`, `500ms`, or a plain number of seconds (`0.5`).
pub fn parse_duration(text: &str) -> Result<Nanos, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        let nanos = seconds * 1e9;
        if !nanos.is_finite() || nanos.abs() >= i64::MAX as f64 {
            return Err(format!("{text:?} is out of range"));
        }
        return Ok(Nanos(nanos.round() as i64));
    }
    let mut rest = text;
    let mut total = 0i64;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?} is not a duration like 15s, 1h30m or 0.5"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| !c.is_alphabetic())
            .map_or(rest.len(), |(i, _)| i);
        let unit = unit_nanos(&rest[..unit_len]).ok_or_else(|| {
            format!(
                "{text:?}: unknown unit {:?} (ns, us, ms, s, m, h, d, w)",
                &rest[..unit_len]
            )
        })?;
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|d| total.checked_add(d))
            .ok_or_else(|| format!("{text:?} is out of range"))?;
    }
    Ok(Nanos(total))
}

/// An RFC 3339 timestamp (`T` or a space between date and time, fractional seconds to the
/// nanosecond, `Z` or an offset). `None` if the text does not look like one; an error if it
/// does but is invalid.
fn rfc3339(text: &str) -> Option<Result<Nanos, String>> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let bad = || format!("{text:?} is not a valid RFC 3339 time");
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = text.get(range).ok_or_else(bad)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse().map_err(|_| bad())
    };
    let parse = || -> Result<Nanos, String> {
        let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?).ok_or_else(bad)?;
        if b[13] != b':' || b[16] != b':' {
            return Err(bad());
        }
        let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if h > 23 || m > 59 || s > 60 {
            return Err(bad());
        }
        let mut pos = 19;
        let mut frac = 0i64;
        if b.get(pos) == Some(&b'.') {
            let digits = b[pos + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if digits == 0 {
                return Err(bad());
            }
            for (i, &c) in b[pos + 1..pos + 1 + digits].iter().enumerate() {
                if i < 9 {
                    frac += i64::from(c - b'0') * 10i64.pow(8 - i as u32);
                }
            }
            pos += 1 + digits;
        }
        let offset = match &text[pos..] {
            "Z" | "z" => 0,
            zone if zone.len() == 6 && matches!(zone.as_bytes()[0], b'+' | b'-') => {
                if zone.as_bytes()[3] != b':' {
                    return Err(bad());
                }
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let (oh, om) = (num(pos + 1..pos + 3)?, num(pos + 4..pos + 6)?);
                if oh > 23 || om > 59 {
                    return Err(bad());
                }
                sign * (oh * 3600 + om * 60)
            }
            _ => return Err(bad()),
        };
        let seconds = days * 86_400 + h * 3600 + m * 60 + s - offset;
        seconds
            .checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(frac))
            .map(Nanos)
            .ok_or_else(|| format!("{text:?} is out of range"))
    };
    Some(parse())
}

/// Midnight UTC of a `YYYYMMDD` date, if it is one.
fn date(text: &str) -> Option<Nanos> {
    let y: i64 = text[0..4].parse().ok()?;
    let m: i64 = text[4..6].parse().ok()?;
    let d: i64 = text[6..8].parse().ok()?;
    if !(1970..=9999).contains(&y) {
        return None;
    }
    days_from_civil(y, m, d).map(|days| Nanos(days * 86_400_000_000_000))
}

/// The civil date (year, month, day) of a day number (days since 1970-01-01), proleptic
/// Gregorian (Howard Hinnant's algorithm).
pub fn civil_from_days(day: i64) -> (i64, i64, i64) {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A time as RFC 3339 in UTC, with as many fractional digits as it needs (none, 3, 6 or 9),
/// as protojson writes a `google.protobuf.Timestamp`.
pub fn format_rfc3339(seconds: i64, nanos: u32) -> String {
    let (y, mo, d) = civil_from_days(seconds.div_euclid(86_400));
    let secs = seconds.rem_euclid(86_400);
    let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let frac = match nanos {
        0 => String::new(),
        n if n % 1_000_000 == 0 => format!(".{:03}", n / 1_000_000),
        n if n % 1_000 == 0 => format!(".{:06}", n / 1_000),
        n => format!(".{n:09}"),
    };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}Z")
}

/// Parses an RFC 3339 time (see [`parse_time`] for the forms accepted).
pub fn parse_rfc3339(text: &str) -> Result<Nanos, String> {
    rfc3339(text.trim()).unwrap_or_else(|| Err(format!("{text:?} is not an RFC 3339 time")))
}

/// Days since 1970-01-01 of a civil date, if it is one.
fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339(951_782_400, 500_000_000),
            "2000-02-29T00:00:00.500Z"
        );
        assert_eq!(format_rfc3339(-1, 1), "1969-12-31T23:59:59.000000001Z");
        for (s, n) in [
            (1_700_000_000, 0),
            (1_700_000_000, 123_456_000),
            (86_399, 7),
        ] {
            let text = format_rfc3339(s, n);
            assert_eq!(
                parse_rfc3339(&text),
                Ok(Nanos(s * 1_000_000_000 + i64::from(n))),
                "{text}"
            );
        }
        assert!(parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn units_are_guessed_from_digit_counts() {
        let now = Nanos(0);
        assert_eq!(
            parse_time("1700000000", now),
            Ok(Nanos(1_700_000_000_000_000_000))
        );
        assert_eq!(
            parse_time("1700000000000", now),
            Ok(Nanos(1_700_000_000_000_000_000))
        );
        assert_eq!(
            parse_time("1700000000000000", now),
            Ok(Nanos(1_700_000_000_000_000_000))
        );
        assert_eq!(
            parse_time("1700000000000000000", now),
            Ok(Nanos(1_700_000_000_000_000_000))
        );
        assert_eq!(
            parse_time("1_700_000_000", now),
            Ok(Nanos(1_700_000_000_000_000_000))
        );
        assert_eq!(
            parse_time("20231114", now),
            Ok(Nanos(1_699_920_000_000_000_000))
        );
    }

    #[test]
    fn relative_times() {
        let now = Nanos(10_000_000_000_000);
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(
            parse_time("now-1h", now),
            Ok(Nanos(now.0 - 3_600_000_000_000))
        );
        assert_eq!(
            parse_time("now-1h+30m", now),
            Ok(Nanos(now.0 - 1_800_000_000_000))
        );
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("now-1q", now).is_err());
        assert!(parse_time("99999999999999999999", now).is_err());
    }

    #[test]
    fn rfc3339_times() {
        let now = Nanos(0);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now),
            Ok(Nanos(1_700_000_000_000_000_000))
        );
        assert_eq!(
            parse_time("2023-11-15T00:13:20.5+02:00", now),
            Ok(Nanos(1_700_000_000_500_000_000))
        );
        assert_eq!(
            parse_time("1970-01-01T00:00:00.000000001Z", now),
            Ok(Nanos(1))
        );
        for bad in [
            "2023-13-14T22:13:20Z",
            "2023-11-14T25:13:20Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0200",
        ] {
            let e = parse_time(bad, now).expect_err(bad);
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s"), Ok(Nanos(15_000_000_000)));
        assert_eq!(parse_duration("1h30m"), Ok(Nanos(5_400_000_000_000)));
        assert_eq!(parse_duration("500ms"), Ok(Nanos(500_000_000)));
        assert_eq!(parse_duration("0.5"), Ok(Nanos(500_000_000)));
        assert_eq!(parse_duration("60"), Ok(Nanos(60_000_000_000)));
        for bad in ["", "fast", "15q", "1e300", "9999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
