//! Times as clients send them: unix time whose unit is guessed from its digit count (13 digits
//! ms, 16 µs, 19 ns, otherwise seconds), `YYYYMMDD` dates, and `now`, `now-1h`, `now+30m`.

use firn_storage::Nanos;

pub fn now() -> Nanos {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Nanos(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
}

/// Parses a client time relative to `now`.
pub fn parse_time(text: &str, now: Nanos) -> Result<Nanos, String> {
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
        let unit = match &rest[..unit_len] {
            "s" => 1_000_000_000i64,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 604_800_000_000_000,
            "M" | "mon" => 30 * 86_400_000_000_000,
            "y" => 365 * 86_400_000_000_000,
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (s, m, h, d, w, M, y)"
                ));
            }
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|d| total.checked_add(sign * d))
            .ok_or_else(|| format!("{text:?} is out of range"))?;
    }
    Ok(Nanos(total))
}

/// Midnight UTC of a `YYYYMMDD` date, if it is one.
fn date(text: &str) -> Option<Nanos> {
    let y: i64 = text[0..4].parse().ok()?;
    let m: i64 = text[4..6].parse().ok()?;
    let d: i64 = text[6..8].parse().ok()?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(Nanos(days * 86_400_000_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
