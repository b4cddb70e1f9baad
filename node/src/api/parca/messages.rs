//! The messages of `parca.query.v1alpha1.QueryService` and the `parca.metastore.v1alpha1`
//! messages its reports use (in [`super::metastore`]), field for field as `proto/parca/query/v1alpha1/query.proto`
//! (wire facts: `../shared/reference/wire-apis.md` §3.3). A proto `oneof` is written as its
//! optional fields: the wire is the same, and a request that sets two of them is refused.
//! Fields Firn does not serve (source references, runtime and frame filters) are read as
//! opaque messages so that a request using them is refused rather than silently answered.

use axum::body::Bytes;
use serde::{Deserialize, Serialize};

use crate::api::parca::LabelSet;
pub use crate::api::parca::metastore::{Function, Line, Location, Mapping};
use crate::api::protobuf::{Duration, Timestamp};
use crate::api::rpc::json::{self, ProtoEnum};

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileTypesRequest {
    #[prost(message, optional, tag = "1")]
    pub start: Option<Timestamp>,
    #[prost(message, optional, tag = "2")]
    pub end: Option<Timestamp>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileTypesResponse {
    #[prost(message, repeated, tag = "1")]
    pub types: Vec<ProfileType>,
}

#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProfileType {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    #[serde(alias = "sample_type")]
    pub sample_type: String,
    #[prost(string, tag = "3")]
    #[serde(alias = "sample_unit")]
    pub sample_unit: String,
    #[prost(string, tag = "4")]
    #[serde(alias = "period_type")]
    pub period_type: String,
    #[prost(string, tag = "5")]
    #[serde(alias = "period_unit")]
    pub period_unit: String,
    #[prost(bool, tag = "6")]
    pub delta: bool,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct QueryRangeRequest {
    #[prost(string, tag = "1")]
    pub query: String,
    #[prost(message, optional, tag = "2")]
    pub start: Option<Timestamp>,
    #[prost(message, optional, tag = "3")]
    pub end: Option<Timestamp>,
    #[prost(uint32, tag = "4")]
    pub limit: u32,
    #[prost(message, optional, tag = "5")]
    pub step: Option<Duration>,
    #[prost(string, repeated, tag = "6")]
    #[serde(alias = "sum_by")]
    pub sum_by: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryRangeResponse {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<MetricsSeries>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MetricsSeries {
    #[prost(message, optional, tag = "1")]
    pub labelset: Option<LabelSet>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<MetricsSample>,
    #[prost(message, optional, tag = "3")]
    #[serde(alias = "period_type")]
    pub period_type: Option<ValueType>,
    #[prost(message, optional, tag = "4")]
    #[serde(alias = "sample_type")]
    pub sample_type: Option<ValueType>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MetricsSample {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub value: i64,
    #[prost(double, tag = "3")]
    #[serde(with = "json::double", alias = "value_per_second")]
    pub value_per_second: f64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub duration: i64,
    #[prost(int32, tag = "5")]
    pub count: i32,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ValueType {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub unit: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct MergeProfile {
    #[prost(string, tag = "1")]
    pub query: String,
    #[prost(message, optional, tag = "2")]
    pub start: Option<Timestamp>,
    #[prost(message, optional, tag = "3")]
    pub end: Option<Timestamp>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SingleProfile {
    #[prost(message, optional, tag = "1")]
    pub time: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub query: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct DiffProfile {
    #[prost(message, optional, tag = "1")]
    pub a: Option<ProfileDiffSelection>,
    #[prost(message, optional, tag = "2")]
    pub b: Option<ProfileDiffSelection>,
    #[prost(bool, optional, tag = "3")]
    pub absolute: Option<bool>,
}

/// `ProfileDiffSelection.Mode`.
#[derive(Debug)]
pub struct DiffMode;

impl DiffMode {
    pub const SINGLE: i32 = 0;
    pub const MERGE: i32 = 1;
}

impl ProtoEnum for DiffMode {
    const NAME: &'static str = "parca.query.v1alpha1.ProfileDiffSelection.Mode";
    const VALUES: &'static [(i32, &'static str)] =
        &[(0, "MODE_SINGLE_UNSPECIFIED"), (1, "MODE_MERGE")];
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileDiffSelection {
    #[prost(int32, tag = "1")]
    #[serde(
        serialize_with = "json::enumeration::serialize::<DiffMode, _>",
        deserialize_with = "json::enumeration::deserialize::<DiffMode, _>"
    )]
    pub mode: i32,
    #[prost(message, optional, tag = "2")]
    pub merge: Option<MergeProfile>,
    #[prost(message, optional, tag = "3")]
    pub single: Option<SingleProfile>,
}

/// `QueryRequest.Mode`.
#[derive(Debug)]
pub struct QueryMode;

impl QueryMode {
    pub const SINGLE: i32 = 0;
    pub const DIFF: i32 = 1;
    pub const MERGE: i32 = 2;
}

impl ProtoEnum for QueryMode {
    const NAME: &'static str = "parca.query.v1alpha1.QueryRequest.Mode";
    const VALUES: &'static [(i32, &'static str)] = &[
        (0, "MODE_SINGLE_UNSPECIFIED"),
        (1, "MODE_DIFF"),
        (2, "MODE_MERGE"),
    ];
}

/// `QueryRequest.ReportType`.
#[derive(Debug)]
pub struct ReportType;

impl ReportType {
    pub const FLAMEGRAPH_UNSPECIFIED: i32 = 0;
    pub const PPROF: i32 = 1;
    pub const TOP: i32 = 2;
    pub const FLAMEGRAPH_TABLE: i32 = 4;
}

impl ProtoEnum for ReportType {
    const NAME: &'static str = "parca.query.v1alpha1.QueryRequest.ReportType";
    const VALUES: &'static [(i32, &'static str)] = &[
        (0, "REPORT_TYPE_FLAMEGRAPH_UNSPECIFIED"),
        (1, "REPORT_TYPE_PPROF"),
        (2, "REPORT_TYPE_TOP"),
        (3, "REPORT_TYPE_CALLGRAPH"),
        (4, "REPORT_TYPE_FLAMEGRAPH_TABLE"),
        (5, "REPORT_TYPE_FLAMEGRAPH_ARROW"),
        (6, "REPORT_TYPE_SOURCE"),
        (7, "REPORT_TYPE_TABLE_ARROW"),
        (8, "REPORT_TYPE_PROFILE_METADATA"),
        (9, "REPORT_TYPE_FLAMECHART"),
    ];
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct QueryRequest {
    #[prost(int32, tag = "1")]
    #[serde(
        serialize_with = "json::enumeration::serialize::<QueryMode, _>",
        deserialize_with = "json::enumeration::deserialize::<QueryMode, _>"
    )]
    pub mode: i32,
    #[prost(message, optional, tag = "2")]
    pub diff: Option<DiffProfile>,
    #[prost(message, optional, tag = "3")]
    pub merge: Option<MergeProfile>,
    #[prost(message, optional, tag = "4")]
    pub single: Option<SingleProfile>,
    #[prost(int32, tag = "5")]
    #[serde(
        alias = "report_type",
        serialize_with = "json::enumeration::serialize::<ReportType, _>",
        deserialize_with = "json::enumeration::deserialize::<ReportType, _>"
    )]
    pub report_type: i32,
    /// Deprecated by Parca: keeps stacks with a function whose name contains it.
    #[prost(string, optional, tag = "6")]
    #[serde(alias = "filter_query")]
    pub filter_query: Option<String>,
    /// Percent of the total below which flame graph nodes are trimmed.
    #[prost(float, optional, tag = "7")]
    #[serde(alias = "node_trim_threshold")]
    pub node_trim_threshold: Option<f32>,
    #[prost(message, optional, tag = "8")]
    #[serde(alias = "group_by")]
    pub group_by: Option<GroupBy>,
    #[prost(bytes = "bytes", optional, tag = "9")]
    #[serde(with = "json::opaque", alias = "source_reference")]
    pub source_reference: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "10")]
    #[serde(with = "json::opaque", alias = "runtime_filter")]
    pub runtime_filter: Option<Bytes>,
    #[prost(bool, optional, tag = "11")]
    #[serde(alias = "invert_call_stack")]
    pub invert_call_stack: Option<bool>,
    #[prost(bytes = "bytes", repeated, tag = "12")]
    #[serde(with = "json::opaque_seq")]
    pub filter: Vec<Bytes>,
    #[prost(string, optional, tag = "13")]
    #[serde(alias = "sandwich_by_function")]
    pub sandwich_by_function: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupBy {
    #[prost(string, repeated, tag = "1")]
    pub fields: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryResponse {
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flamegraph: Option<Flamegraph>,
    /// A gzipped pprof profile.
    #[prost(bytes = "bytes", optional, tag = "6")]
    #[serde(with = "json::opt_bytes", skip_serializing_if = "Option::is_none")]
    pub pprof: Option<Bytes>,
    #[prost(message, optional, tag = "7")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top: Option<Top>,
    #[prost(int64, tag = "9")]
    #[serde(with = "json::int64")]
    pub total: i64,
    #[prost(int64, tag = "10")]
    #[serde(with = "json::int64")]
    pub filtered: i64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Top {
    #[prost(message, repeated, tag = "1")]
    pub list: Vec<TopNode>,
    #[prost(int32, tag = "2")]
    pub reported: i32,
    #[prost(int32, tag = "3")]
    pub total: i32,
    #[prost(string, tag = "4")]
    pub unit: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct TopNode {
    #[prost(message, optional, tag = "1")]
    pub meta: Option<TopNodeMeta>,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub cumulative: i64,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub flat: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub diff: i64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct TopNodeMeta {
    #[prost(message, optional, tag = "1")]
    pub location: Option<Location>,
    #[prost(message, optional, tag = "2")]
    pub mapping: Option<Mapping>,
    #[prost(message, optional, tag = "3")]
    pub function: Option<Function>,
    #[prost(message, optional, tag = "4")]
    pub line: Option<Line>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Flamegraph {
    #[prost(message, optional, tag = "1")]
    pub root: Option<FlamegraphRootNode>,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub total: i64,
    #[prost(string, tag = "3")]
    pub unit: String,
    #[prost(int32, tag = "4")]
    pub height: i32,
    /// Table form: the strings the functions name, `""` first.
    #[prost(string, repeated, tag = "5")]
    #[serde(alias = "string_table")]
    pub string_table: Vec<String>,
    #[prost(message, repeated, tag = "6")]
    pub locations: Vec<Location>,
    #[prost(message, repeated, tag = "7")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "8")]
    pub function: Vec<Function>,
    #[prost(int64, tag = "9")]
    #[serde(with = "json::int64", alias = "untrimmed_total")]
    pub untrimmed_total: i64,
    #[prost(int64, tag = "10")]
    #[serde(with = "json::int64")]
    pub trimmed: i64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct FlamegraphRootNode {
    #[prost(int64, tag = "1")]
    #[serde(with = "json::int64")]
    pub cumulative: i64,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub diff: i64,
    #[prost(message, repeated, tag = "3")]
    pub children: Vec<FlamegraphNode>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct FlamegraphNode {
    #[prost(message, optional, tag = "1")]
    pub meta: Option<FlamegraphNodeMeta>,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub cumulative: i64,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub diff: i64,
    #[prost(message, repeated, tag = "4")]
    pub children: Vec<FlamegraphNode>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FlamegraphNodeMeta {
    #[prost(message, optional, tag = "1")]
    pub location: Option<Location>,
    #[prost(message, optional, tag = "2")]
    pub mapping: Option<Mapping>,
    #[prost(message, optional, tag = "3")]
    pub function: Option<Function>,
    #[prost(message, optional, tag = "4")]
    pub line: Option<Line>,
    /// Table form: 1-based index into `Flamegraph.locations` (0: none).
    #[prost(uint32, tag = "5")]
    #[serde(alias = "location_index")]
    pub location_index: u32,
    /// Table form: index into that location's lines.
    #[prost(uint32, tag = "6")]
    #[serde(alias = "line_index")]
    pub line_index: u32,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelsRequest {
    #[prost(string, repeated, tag = "1")]
    pub r#match: Vec<String>,
    #[prost(message, optional, tag = "2")]
    pub start: Option<Timestamp>,
    #[prost(message, optional, tag = "3")]
    pub end: Option<Timestamp>,
    #[prost(string, optional, tag = "4")]
    #[serde(alias = "profileType", alias = "profile_type")]
    pub profile_type: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LabelsResponse {
    #[prost(string, repeated, tag = "1")]
    #[serde(alias = "label_names")]
    pub label_names: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub warnings: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ValuesRequest {
    #[prost(string, tag = "1")]
    #[serde(alias = "label_name")]
    pub label_name: String,
    #[prost(string, repeated, tag = "2")]
    pub r#match: Vec<String>,
    #[prost(message, optional, tag = "3")]
    pub start: Option<Timestamp>,
    #[prost(message, optional, tag = "4")]
    pub end: Option<Timestamp>,
    #[prost(string, optional, tag = "5")]
    #[serde(alias = "profile_type")]
    pub profile_type: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ValuesResponse {
    #[prost(string, repeated, tag = "1")]
    #[serde(alias = "label_values")]
    pub label_values: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub warnings: Vec<String>,
}
