//! `google.v1`: Pyroscope's copy of pprof's `profile.proto` (field numbers identical to
//! `perftools.profiles`, without `doc_url` and `Line.column`), with protojson names, and the
//! one conversion from the engine's pprof.

use firn_storage::pprof::proto;
use serde::{Deserialize, Serialize};

use crate::api::rpc::json;

/// `google.v1.Profile`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    #[serde(alias = "sample_type")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    #[serde(alias = "string_table")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "7")]
    #[serde(with = "json::int64", alias = "drop_frames")]
    pub drop_frames: i64,
    #[prost(int64, tag = "8")]
    #[serde(with = "json::int64", alias = "keep_frames")]
    pub keep_frames: i64,
    #[prost(int64, tag = "9")]
    #[serde(with = "json::int64", alias = "time_nanos")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    #[serde(with = "json::int64", alias = "duration_nanos")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    #[serde(alias = "period_type", skip_serializing_if = "Option::is_none")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    #[serde(with = "json::int64")]
    pub period: i64,
    #[prost(int64, repeated, tag = "13")]
    #[serde(with = "json::int64_seq")]
    pub comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    #[serde(with = "json::int64", alias = "default_sample_type")]
    pub default_sample_type: i64,
}

/// `google.v1.ValueType`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    #[serde(with = "json::int64")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub unit: i64,
}

/// `google.v1.Sample`: `location_id[0]` is the leaf.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    #[serde(with = "json::uint64_seq", alias = "location_id")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    #[serde(with = "json::int64_seq")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// `google.v1.Label`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Label {
    #[prost(int64, tag = "1")]
    #[serde(with = "json::int64")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub num: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64", alias = "num_unit")]
    pub num_unit: i64,
}

/// `google.v1.Mapping`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    #[serde(with = "json::uint64")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    #[serde(with = "json::uint64", alias = "memory_start")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    #[serde(with = "json::uint64", alias = "memory_limit")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    #[serde(with = "json::uint64", alias = "file_offset")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    #[serde(with = "json::int64")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    #[serde(with = "json::int64", alias = "build_id")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    #[serde(alias = "has_functions")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    #[serde(alias = "has_filenames")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    #[serde(alias = "has_line_numbers")]
    pub has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    #[serde(alias = "has_inline_frames")]
    pub has_inline_frames: bool,
}

/// `google.v1.Location`: `line[0]` is the innermost inlined callee.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Location {
    #[prost(uint64, tag = "1")]
    #[serde(with = "json::uint64")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    #[serde(with = "json::uint64", alias = "mapping_id")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    #[serde(with = "json::uint64")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    #[prost(bool, tag = "5")]
    #[serde(alias = "is_folded")]
    pub is_folded: bool,
}

/// `google.v1.Line`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Line {
    #[prost(uint64, tag = "1")]
    #[serde(with = "json::uint64", alias = "function_id")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub line: i64,
}

/// `google.v1.Function`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Function {
    #[prost(uint64, tag = "1")]
    #[serde(with = "json::uint64")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64", alias = "system_name")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub filename: i64,
    #[prost(int64, tag = "5")]
    #[serde(with = "json::int64", alias = "start_line")]
    pub start_line: i64,
}

impl From<proto::ValueType> for ValueType {
    fn from(v: proto::ValueType) -> Self {
        Self {
            r#type: v.r#type,
            unit: v.unit,
        }
    }
}

impl From<proto::Profile> for Profile {
    /// Field by field; `doc_url` and `Line.column`, which `google.v1` lacks, are dropped.
    fn from(p: proto::Profile) -> Self {
        Self {
            sample_type: p.sample_type.into_iter().map(ValueType::from).collect(),
            sample: p
                .sample
                .into_iter()
                .map(|s| Sample {
                    location_id: s.location_id,
                    value: s.value,
                    label: s
                        .label
                        .into_iter()
                        .map(|l| Label {
                            key: l.key,
                            str: l.str,
                            num: l.num,
                            num_unit: l.num_unit,
                        })
                        .collect(),
                })
                .collect(),
            mapping: p
                .mapping
                .into_iter()
                .map(|m| Mapping {
                    id: m.id,
                    memory_start: m.memory_start,
                    memory_limit: m.memory_limit,
                    file_offset: m.file_offset,
                    filename: m.filename,
                    build_id: m.build_id,
                    has_functions: m.has_functions,
                    has_filenames: m.has_filenames,
                    has_line_numbers: m.has_line_numbers,
                    has_inline_frames: m.has_inline_frames,
                })
                .collect(),
            location: p
                .location
                .into_iter()
                .map(|l| Location {
                    id: l.id,
                    mapping_id: l.mapping_id,
                    address: l.address,
                    line: l
                        .line
                        .into_iter()
                        .map(|line| Line {
                            function_id: line.function_id,
                            line: line.line,
                        })
                        .collect(),
                    is_folded: l.is_folded,
                })
                .collect(),
            function: p
                .function
                .into_iter()
                .map(|f| Function {
                    id: f.id,
                    name: f.name,
                    system_name: f.system_name,
                    filename: f.filename,
                    start_line: f.start_line,
                })
                .collect(),
            string_table: p.string_table,
            drop_frames: p.drop_frames,
            keep_frames: p.keep_frames,
            time_nanos: p.time_nanos,
            duration_nanos: p.duration_nanos,
            period_type: p.period_type.map(ValueType::from),
            period: p.period,
            comment: p.comment,
            default_sample_type: p.default_sample_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn bytes_equal_the_engines_pprof() {
        let mut b = firn_storage::testing::ProfileBuilder::cpu();
        b.sample(&["main", "work"], &[3, 30_000_000], &[("thread", "7")]);
        let engine = b.build();
        let ours = Profile::from(engine.clone());
        assert_eq!(ours.encode_to_vec(), engine.encode_to_vec());
        let json = serde_json::to_value(&ours).expect("json");
        assert_eq!(json["sample"][0]["value"][1], "30000000");
        assert!(json["sampleType"].is_array() && json["stringTable"][0] == "");
    }
}
