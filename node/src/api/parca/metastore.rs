//! `parca.metastore.v1alpha1`: the symbol messages Parca's query reports carry, field for
//! field as `proto/parca/metastore/v1alpha1/metastore.proto` (a mapping's `has_*` flags and
//! string indices, fields 7-12, left out: Firn's reports group frames by function).

use serde::{Deserialize, Serialize};

use crate::api::rpc::json;

/// `parca.metastore.v1alpha1.Location`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Location {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(uint64, tag = "2")]
    #[serde(with = "json::uint64")]
    pub address: u64,
    #[prost(string, tag = "4")]
    #[serde(alias = "mapping_id")]
    pub mapping_id: String,
    #[prost(bool, tag = "5")]
    #[serde(alias = "is_folded")]
    pub is_folded: bool,
    #[prost(message, repeated, tag = "6")]
    pub lines: Vec<Line>,
    #[prost(uint32, tag = "7")]
    #[serde(alias = "mapping_index")]
    pub mapping_index: u32,
}

/// `parca.metastore.v1alpha1.Line`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Line {
    #[prost(string, tag = "1")]
    #[serde(alias = "function_id")]
    pub function_id: String,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub line: i64,
    /// Table form: 1-based index into `Flamegraph.function` (0: none).
    #[prost(uint32, tag = "3")]
    #[serde(alias = "function_index")]
    pub function_index: u32,
}

/// `parca.metastore.v1alpha1.Function`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Function {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64", alias = "start_line")]
    pub start_line: i64,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    #[serde(alias = "system_name")]
    pub system_name: String,
    #[prost(string, tag = "5")]
    pub filename: String,
    #[prost(uint32, tag = "6")]
    #[serde(alias = "name_string_index")]
    pub name_string_index: u32,
    #[prost(uint32, tag = "7")]
    #[serde(alias = "system_name_string_index")]
    pub system_name_string_index: u32,
    #[prost(uint32, tag = "8")]
    #[serde(alias = "filename_string_index")]
    pub filename_string_index: u32,
}

/// `parca.metastore.v1alpha1.Mapping` (Firn's reports carry none: frames are grouped by
/// function name).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Mapping {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(uint64, tag = "2")]
    #[serde(with = "json::uint64")]
    pub start: u64,
    #[prost(uint64, tag = "3")]
    #[serde(with = "json::uint64")]
    pub limit: u64,
    #[prost(uint64, tag = "4")]
    #[serde(with = "json::uint64")]
    pub offset: u64,
    #[prost(string, tag = "5")]
    pub file: String,
    #[prost(string, tag = "6")]
    #[serde(alias = "build_id")]
    pub build_id: String,
}
