//! protojson, the JSON form of protobuf that Connect and gRPC+JSON clients speak, as serde
//! helpers for the hand-written messages: 64-bit integers as strings (numbers accepted), enums
//! by name (numbers accepted), bytes as base64 (URL-safe and unpadded accepted), doubles as
//! numbers (strings such as `"NaN"` accepted), and `null` as the field's default. Field names
//! (lowerCamelCase, the proto names accepted as aliases) are serde attributes on the messages.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serializer};

/// A proto enum's values and names, for JSON.
pub trait ProtoEnum {
    /// The enum's proto name, for error messages.
    const NAME: &'static str;
    /// Every value with its proto name (`PROFILE_FORMAT_FLAMEGRAPH`).
    const VALUES: &'static [(i32, &'static str)];
}

/// An integer from a JSON number, a string of digits, or `null` (the default).
struct IntVisitor<T>(PhantomData<T>);

impl<T> IntVisitor<T>
where
    T: TryFrom<i128>,
{
    fn convert<E: de::Error>(v: i128) -> Result<T, E> {
        T::try_from(v).map_err(|_| {
            E::custom(format!(
                "{v} is out of range for {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

impl<'de, T> Visitor<'de> for IntVisitor<T>
where
    T: TryFrom<i128> + Default,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer as a number or a string")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Self::convert(i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Self::convert(i128::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        // protojson allows integral numbers written with an exponent (`1e3`).
        if v.fract() != 0.0 || !v.is_finite() || v.abs() > 1.8e19 {
            return Err(E::custom(format!("{v} is not an integer")));
        }
        Self::convert(v as i128)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        if let Ok(n) = v.parse::<i128>() {
            return Self::convert(n);
        }
        match v.parse::<f64>() {
            Ok(f) => self.visit_f64(f),
            Err(_) => Err(E::custom(format!("{v:?} is not an integer"))),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }
}

/// A sequence of integers, or `null` for none.
struct IntSeqVisitor<T>(PhantomData<T>);

/// One integer of a sequence.
struct Int<T>(T);

impl<'de, T> Deserialize<'de> for Int<T>
where
    T: TryFrom<i128> + Default,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntVisitor(PhantomData)).map(Int)
    }
}

impl<'de, T> Visitor<'de> for IntSeqVisitor<T>
where
    T: TryFrom<i128> + Default,
{
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of integers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        // The request body bounds the list; the hint only sizes the first allocation.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Int(v)) = seq.next_element::<Int<T>>()? {
            out.push(v);
        }
        Ok(out)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
}

/// `int64` and `sint64`/`sfixed64`: a string out, a string or number in.
pub mod int64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        d.deserialize_any(IntVisitor(PhantomData))
    }
}

/// `uint64` and `fixed64`.
pub mod uint64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(IntVisitor(PhantomData))
    }
}

/// `repeated int64`.
pub mod int64_seq {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[i64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|n| n.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
        d.deserialize_any(IntSeqVisitor(PhantomData))
    }
}

/// `repeated uint64`.
pub mod uint64_seq {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|n| n.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        d.deserialize_any(IntSeqVisitor(PhantomData))
    }
}

/// `optional int64`: absent stays `None`.
pub mod opt_int64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.collect_str(n),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        struct Opt;
        impl<'de> Visitor<'de> for Opt {
            type Value = Option<i64>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(IntVisitor(PhantomData)).map(Some)
            }
        }
        d.deserialize_option(Opt)
    }
}

/// `double`: a number out (non-finite values as protojson's strings), a number or string in.
pub mod double {
    use super::*;

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_infinite() {
            s.serialize_str(if *v > 0.0 { "Infinity" } else { "-Infinity" })
        } else {
            s.serialize_f64(*v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                match v {
                    "NaN" => Ok(f64::NAN),
                    "Infinity" => Ok(f64::INFINITY),
                    "-Infinity" => Ok(f64::NEG_INFINITY),
                    _ => v
                        .parse()
                        .map_err(|_| E::custom(format!("{v:?} is not a number"))),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
                Ok(0.0)
            }
        }
        d.deserialize_any(V)
    }
}

/// `bytes`: standard base64 out; standard or URL-safe, padded or not, in.
pub mod bytes {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};

    use super::*;

    pub fn serialize<S: Serializer>(v: &::bytes::Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<::bytes::Bytes, D::Error> {
        let text: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
        let Some(text) = text else {
            return Ok(::bytes::Bytes::new());
        };
        let trimmed = text.trim_end_matches('=');
        let decoded = if trimmed.contains(['-', '_']) {
            URL_SAFE_NO_PAD.decode(trimmed)
        } else {
            STANDARD_NO_PAD.decode(trimmed)
        };
        decoded
            .map(::bytes::Bytes::from)
            .map_err(|e| de::Error::custom(format!("not base64: {e}")))
    }
}

/// `optional bytes`: absent stays `None`.
pub mod opt_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<::bytes::Bytes>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => bytes::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<::bytes::Bytes>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| bytes::deserialize(serde::de::value::StrDeserializer::<D::Error>::new(&t)))
            .transpose()
    }
}

/// A message Firn reads only to know it was sent (the proto side is kept as its bytes): any
/// JSON value but `null` counts as present.
pub mod opaque {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<::bytes::Bytes>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(_) => s.collect_map(std::iter::empty::<((), ())>()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<::bytes::Bytes>, D::Error> {
        let value: Option<serde::de::IgnoredAny> = Option::deserialize(d)?;
        Ok(value.map(|_| ::bytes::Bytes::new()))
    }
}

/// `repeated` of such messages: one empty entry per element sent.
pub mod opaque_seq {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[::bytes::Bytes], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            v.iter()
                .map(|_| std::collections::BTreeMap::<(), ()>::new()),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<::bytes::Bytes>, D::Error> {
        let values: Option<Vec<serde::de::IgnoredAny>> = Option::deserialize(d)?;
        Ok(values
            .unwrap_or_default()
            .into_iter()
            .map(|_| ::bytes::Bytes::new())
            .collect())
    }
}

/// A proto enum as an `i32` field: its name out (the number when it has none), a name or a
/// number in. Use as `serialize_with = "json::enumeration::serialize::<E, _>"`.
pub mod enumeration {
    use super::*;

    pub fn serialize<E: ProtoEnum, S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        match E::VALUES.iter().find(|(n, _)| n == v) {
            Some((_, name)) => s.serialize_str(name),
            None => s.serialize_i32(*v),
        }
    }

    pub fn deserialize<'de, E: ProtoEnum, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        d.deserialize_any(EnumVisitor::<E>(PhantomData))
    }
}

/// An `optional` proto enum: absent stays `None`.
pub mod opt_enumeration {
    use super::*;

    pub fn serialize<E: ProtoEnum, S: Serializer>(
        v: &Option<i32>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => enumeration::serialize::<E, S>(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, E: ProtoEnum, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<i32>, D::Error> {
        struct Opt<E>(PhantomData<E>);
        impl<'de, E: ProtoEnum> Visitor<'de> for Opt<E> {
            type Value = Option<i32>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a {} name or number, or null", E::NAME)
            }
            fn visit_none<Er: de::Error>(self) -> Result<Self::Value, Er> {
                Ok(None)
            }
            fn visit_unit<Er: de::Error>(self) -> Result<Self::Value, Er> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(EnumVisitor::<E>(PhantomData)).map(Some)
            }
        }
        d.deserialize_option(Opt::<E>(PhantomData))
    }
}

struct EnumVisitor<E>(PhantomData<E>);

impl<'de, E: ProtoEnum> Visitor<'de> for EnumVisitor<E> {
    type Value = i32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} name or number", E::NAME)
    }

    fn visit_str<Er: de::Error>(self, v: &str) -> Result<i32, Er> {
        E::VALUES
            .iter()
            .find(|(_, name)| *name == v)
            .map(|(n, _)| *n)
            .ok_or_else(|| {
                let names: Vec<&str> = E::VALUES.iter().map(|(_, n)| *n).collect();
                Er::custom(format!(
                    "{v:?} is not a {}; expected one of {}",
                    E::NAME,
                    names.join(", ")
                ))
            })
    }

    fn visit_i64<Er: de::Error>(self, v: i64) -> Result<i32, Er> {
        i32::try_from(v).map_err(|_| Er::custom(format!("{v} is out of range for {}", E::NAME)))
    }

    fn visit_u64<Er: de::Error>(self, v: u64) -> Result<i32, Er> {
        i32::try_from(v).map_err(|_| Er::custom(format!("{v} is out of range for {}", E::NAME)))
    }

    fn visit_unit<Er: de::Error>(self) -> Result<i32, Er> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    struct Color;
    impl ProtoEnum for Color {
        const NAME: &'static str = "Color";
        const VALUES: &'static [(i32, &'static str)] = &[(0, "COLOR_NONE"), (1, "COLOR_RED")];
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    struct Message {
        #[serde(with = "int64")]
        start_ms: i64,
        #[serde(with = "uint64_seq")]
        ids: Vec<u64>,
        #[serde(with = "opt_int64", skip_serializing_if = "Option::is_none")]
        max_nodes: Option<i64>,
        #[serde(
            serialize_with = "enumeration::serialize::<Color, _>",
            deserialize_with = "enumeration::deserialize::<Color, _>"
        )]
        color: i32,
        #[serde(with = "bytes")]
        raw: ::bytes::Bytes,
        #[serde(with = "double")]
        step: f64,
    }

    #[test]
    fn protojson_round_trip_and_lenient_input() {
        let m = Message {
            start_ms: -5,
            ids: vec![1, u64::MAX],
            max_nodes: Some(7),
            color: 1,
            raw: ::bytes::Bytes::from_static(b"\xff\x00a"),
            step: 15.0,
        };
        let text = serde_json::to_string(&m).expect("serialize");
        assert_eq!(
            text,
            r#"{"startMs":"-5","ids":["1","18446744073709551615"],"maxNodes":"7","color":"COLOR_RED","raw":"/wBh","step":15.0}"#
        );
        assert_eq!(
            serde_json::from_str::<Message>(&text).expect("round trip"),
            m
        );
        let lenient: Message = serde_json::from_str(
            r#"{"startMs":-5,"ids":[1,"18446744073709551615"],"maxNodes":7,"color":1,"raw":"_wBh","step":"15"}"#,
        )
        .expect("numbers, URL-safe base64, enum numbers");
        assert_eq!(lenient, m);
        let nulls: Message =
            serde_json::from_str(r#"{"startMs":null,"ids":null,"maxNodes":null,"color":null}"#)
                .expect("nulls are defaults");
        assert_eq!(nulls, Message::default());
    }

    #[test]
    fn bad_values_are_named() {
        for (json, needle) in [
            (r#"{"startMs":"x"}"#, "is not an integer"),
            (r#"{"startMs":"99999999999999999999"}"#, "out of range"),
            (r#"{"ids":[-1]}"#, "out of range"),
            (
                r#"{"color":"COLOR_BLUE"}"#,
                "expected one of COLOR_NONE, COLOR_RED",
            ),
            (r#"{"raw":"***"}"#, "not base64"),
            (r#"{"startMs":1.5}"#, "not an integer"),
        ] {
            let e = serde_json::from_str::<Message>(json).expect_err(json);
            assert!(e.to_string().contains(needle), "{json}: {e}");
        }
    }
}
