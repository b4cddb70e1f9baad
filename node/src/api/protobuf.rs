//! `google.protobuf.Timestamp` and `google.protobuf.Duration`, the well-known types Parca's
//! messages use, with their protojson forms: a timestamp as an RFC 3339 string
//! (`"2024-05-01T12:00:00.5Z"`), a duration as seconds with an `s` suffix (`"1.5s"`).

use std::fmt;

use firn_storage::Nanos;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::time::{format_rfc3339, parse_rfc3339};

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// `google.protobuf.Timestamp`: seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `google.protobuf.Duration`: seconds and nanoseconds of the same sign.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    pub fn from_nanos(t: Nanos) -> Self {
        Self {
            seconds: t.0.div_euclid(NANOS_PER_SECOND),
            nanos: t.0.rem_euclid(NANOS_PER_SECOND) as i32,
        }
    }

    /// The time in nanoseconds; `field` names it for errors. Nanoseconds must be in
    /// `0..1e9` and the time between 1970 and 2262 (what an `i64` of nanoseconds holds).
    pub fn to_nanos(self, field: &str) -> Result<Nanos> {
        if !(0..1_000_000_000).contains(&self.nanos) {
            return Err(Error::BadRequest(format!(
                "{field}.nanos is {}; it must be between 0 and 999999999",
                self.nanos
            )));
        }
        self.seconds
            .checked_mul(NANOS_PER_SECOND)
            .and_then(|n| n.checked_add(i64::from(self.nanos)))
            .filter(|n| *n >= 0)
            .map(Nanos)
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "{field} is {} s; it must be between 1970 and 2262",
                    self.seconds
                ))
            })
    }
}

impl Duration {
    pub fn from_nanos(d: Nanos) -> Self {
        Self {
            seconds: d.0 / NANOS_PER_SECOND,
            nanos: (d.0 % NANOS_PER_SECOND) as i32,
        }
    }

    /// The duration in nanoseconds; `field` names it for errors.
    pub fn to_nanos(self, field: &str) -> Result<Nanos> {
        if self.nanos.unsigned_abs() >= 1_000_000_000
            || (self.seconds != 0 && self.nanos != 0 && (self.seconds < 0) != (self.nanos < 0))
        {
            return Err(Error::BadRequest(format!(
                "{field} has {} s and {} ns; the nanoseconds must be below a second and of the seconds' sign",
                self.seconds, self.nanos
            )));
        }
        self.seconds
            .checked_mul(NANOS_PER_SECOND)
            .and_then(|n| n.checked_add(i64::from(self.nanos)))
            .map(Nanos)
            .ok_or_else(|| Error::BadRequest(format!("{field} is too long")))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(self.seconds, self.nanos.max(0) as u32))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time such as \"2024-05-01T12:00:00Z\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Timestamp, E> {
                parse_rfc3339(v)
                    .map(Timestamp::from_nanos)
                    .map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let sign = if self.seconds < 0 || self.nanos < 0 {
            "-"
        } else {
            ""
        };
        let (secs, nanos) = (self.seconds.unsigned_abs(), self.nanos.unsigned_abs());
        let text = match nanos {
            0 => format!("{sign}{secs}s"),
            n if n % 1_000_000 == 0 => format!("{sign}{secs}.{:03}s", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{sign}{secs}.{:06}s", n / 1_000),
            n => format!("{sign}{secs}.{n:09}s"),
        };
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration in seconds such as \"60s\" or \"1.5s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Duration, E> {
                parse_duration(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// protojson's duration: decimal seconds (up to 9 fractional digits), then `s`.
fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as \"60s\" or \"1.5s\"");
    let number = text.strip_suffix('s').ok_or_else(bad)?;
    let (negative, number) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty()
        || frac.len() > 9
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let seconds: i64 = whole.parse().map_err(|_| bad())?;
    let nanos: i32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    Ok(if negative {
        Duration {
            seconds: -seconds,
            nanos: -nanos,
        }
    } else {
        Duration { seconds, nanos }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protojson_forms() {
        let t = Timestamp::from_nanos(Nanos(1_700_000_000_250_000_000));
        let text = serde_json::to_string(&t).expect("serialize");
        assert_eq!(text, "\"2023-11-14T22:13:20.250Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&text).expect("parse"), t);
        let d = Duration::from_nanos(Nanos(1_500_000_000));
        assert_eq!(serde_json::to_string(&d).expect("serialize"), "\"1.500s\"");
        for (text, nanos) in [("\"60s\"", 60_000_000_000), ("\"0.000000001s\"", 1)] {
            let d: Duration = serde_json::from_str(text).expect(text);
            assert_eq!(d.to_nanos("step").expect("valid"), Nanos(nanos));
        }
        let negative: Duration = serde_json::from_str("\"-1.5s\"").expect("negative");
        assert_eq!(
            negative.to_nanos("step").expect("valid"),
            Nanos(-1_500_000_000)
        );
        for bad in ["\"60\"", "\"1m\"", "\"1.1234567891s\"", "\"s\""] {
            assert!(serde_json::from_str::<Duration>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = Timestamp {
            seconds: 1,
            nanos: -1,
        }
        .to_nanos("merge.start")
        .expect_err("negative nanos");
        assert!(e.to_string().contains("merge.start.nanos is -1"), "{e}");
        let e = Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        }
        .to_nanos("end")
        .expect_err("too late");
        assert!(e.to_string().contains("between 1970 and 2262"), "{e}");
        let e = Duration {
            seconds: 1,
            nanos: -5,
        }
        .to_nanos("step")
        .expect_err("mixed signs");
        assert!(e.to_string().contains("step has 1 s and -5 ns"), "{e}");
    }
}
