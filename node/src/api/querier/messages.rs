//! `querier.v1` messages (field numbers from Pyroscope's `api/querier/v1/querier.proto`),
//! declared with prost's derive and serde for protojson. Fields Firn does not serve
//! (`async`, heat maps, query analysis) are left out; prost skips them on decode.

use axum::body::Bytes;
use serde::{Deserialize, Serialize};

use crate::api::google;
use crate::api::rpc::json::{self, ProtoEnum};
use crate::api::types::{
    ExemplarType, Labels, ProfileType, Series, StackTraceSelector, TimeSeriesAggregationType,
};

/// `querier.v1.ProfileFormat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ProfileFormat {
    Unspecified = 0,
    Flamegraph = 1,
    Tree = 2,
    Dot = 3,
    Pprof = 4,
}

impl ProtoEnum for ProfileFormat {
    const NAME: &'static str = "querier.v1.ProfileFormat";
    const VALUES: &'static [(i32, &'static str)] = &[
        (0, "PROFILE_FORMAT_UNSPECIFIED"),
        (1, "PROFILE_FORMAT_FLAMEGRAPH"),
        (2, "PROFILE_FORMAT_TREE"),
        (3, "PROFILE_FORMAT_DOT"),
        (4, "PROFILE_FORMAT_PPROF"),
    ];
}

/// `querier.v1.ProfileTypesRequest`: zero times mean "recent".
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileTypesRequest {
    #[prost(int64, tag = "1")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub end: i64,
}

/// `querier.v1.ProfileTypesResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProfileTypesResponse {
    #[prost(message, repeated, tag = "1")]
    #[serde(alias = "profile_types")]
    pub profile_types: Vec<ProfileType>,
}

/// `querier.v1.SeriesRequest`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SeriesRequest {
    #[prost(string, repeated, tag = "1")]
    pub matchers: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    #[serde(alias = "label_names")]
    pub label_names: Vec<String>,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub end: i64,
}

/// `querier.v1.SeriesResponse` (field 1 is unused upstream).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SeriesResponse {
    #[prost(message, repeated, tag = "2")]
    #[serde(alias = "labels_set")]
    pub labels_set: Vec<Labels>,
}

/// `querier.v1.SelectMergeStacktracesRequest`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SelectMergeStacktracesRequest {
    #[prost(string, tag = "1")]
    #[serde(rename = "profileTypeID", alias = "profile_typeID")]
    pub profile_type_id: String,
    #[prost(string, tag = "2")]
    #[serde(alias = "label_selector")]
    pub label_selector: String,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub end: i64,
    #[prost(int64, optional, tag = "5")]
    #[serde(
        with = "json::opt_int64",
        alias = "max_nodes",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_nodes: Option<i64>,
    #[prost(enumeration = "ProfileFormat", tag = "6")]
    #[serde(
        serialize_with = "json::enumeration::serialize::<ProfileFormat, _>",
        deserialize_with = "json::enumeration::deserialize::<ProfileFormat, _>"
    )]
    pub format: i32,
    #[prost(message, optional, tag = "7")]
    #[serde(
        alias = "stack_trace_selector",
        skip_serializing_if = "Option::is_none"
    )]
    pub stack_trace_selector: Option<StackTraceSelector>,
    #[prost(string, repeated, tag = "8")]
    #[serde(alias = "profile_id_selector")]
    pub profile_id_selector: Vec<String>,
    #[prost(string, repeated, tag = "10")]
    #[serde(alias = "trace_id_selector")]
    pub trace_id_selector: Vec<String>,
    #[prost(string, repeated, tag = "11")]
    #[serde(alias = "span_selector")]
    pub span_selector: Vec<String>,
}

/// `querier.v1.SelectMergeSpanProfileRequest` (deprecated by Pyroscope in favour of
/// `SelectMergeStacktraces` with `span_selector`; Grafana still sends it).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SelectMergeSpanProfileRequest {
    #[prost(string, tag = "1")]
    #[serde(rename = "profileTypeID", alias = "profile_typeID")]
    pub profile_type_id: String,
    #[prost(string, tag = "2")]
    #[serde(alias = "label_selector")]
    pub label_selector: String,
    #[prost(string, repeated, tag = "3")]
    #[serde(alias = "span_selector")]
    pub span_selector: Vec<String>,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "5")]
    #[serde(with = "json::int64")]
    pub end: i64,
    #[prost(int64, optional, tag = "6")]
    #[serde(
        with = "json::opt_int64",
        alias = "max_nodes",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_nodes: Option<i64>,
    #[prost(enumeration = "ProfileFormat", tag = "7")]
    #[serde(
        serialize_with = "json::enumeration::serialize::<ProfileFormat, _>",
        deserialize_with = "json::enumeration::deserialize::<ProfileFormat, _>"
    )]
    pub format: i32,
}

/// `querier.v1.SelectMergeSpanProfileResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectMergeSpanProfileResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flamegraph: Option<FlameGraph>,
    #[prost(bytes = "bytes", tag = "2")]
    #[serde(with = "json::bytes", skip_serializing_if = "Bytes::is_empty")]
    pub tree: Bytes,
}

/// `querier.v1.SelectMergeStacktracesResponse`: one of the formats is set.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectMergeStacktracesResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flamegraph: Option<FlameGraph>,
    #[prost(bytes = "bytes", tag = "2")]
    #[serde(with = "json::bytes", skip_serializing_if = "Bytes::is_empty")]
    pub tree: Bytes,
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pprof: Option<PprofProfile>,
}

/// `querier.v1.PprofProfile`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PprofProfile {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<google::Profile>,
}

/// `querier.v1.FlameGraph`: levels of `[x offset, total, self, name index]` quadruples.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FlameGraph {
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub levels: Vec<Level>,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub total: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64", alias = "max_self")]
    pub max_self: i64,
}

/// `querier.v1.FlameGraphDiff`: levels of `[left x offset, left total, left self, right x
/// offset, right total, right self, name index]`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FlameGraphDiff {
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub levels: Vec<Level>,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub total: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64", alias = "max_self")]
    pub max_self: i64,
    #[prost(int64, tag = "5")]
    #[serde(rename = "leftTicks", with = "json::int64")]
    pub left_ticks: i64,
    #[prost(int64, tag = "6")]
    #[serde(rename = "rightTicks", with = "json::int64")]
    pub right_ticks: i64,
}

/// `querier.v1.Level`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Level {
    #[prost(int64, repeated, tag = "1")]
    #[serde(with = "json::int64_seq")]
    pub values: Vec<i64>,
}

/// `querier.v1.SelectMergeProfileRequest`; answered with a `google.v1.Profile`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SelectMergeProfileRequest {
    #[prost(string, tag = "1")]
    #[serde(rename = "profileTypeID", alias = "profile_typeID")]
    pub profile_type_id: String,
    #[prost(string, tag = "2")]
    #[serde(alias = "label_selector")]
    pub label_selector: String,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub end: i64,
    #[prost(int64, optional, tag = "5")]
    #[serde(
        with = "json::opt_int64",
        alias = "max_nodes",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_nodes: Option<i64>,
    #[prost(message, optional, tag = "6")]
    #[serde(
        alias = "stack_trace_selector",
        skip_serializing_if = "Option::is_none"
    )]
    pub stack_trace_selector: Option<StackTraceSelector>,
    #[prost(string, repeated, tag = "7")]
    #[serde(alias = "profile_id_selector")]
    pub profile_id_selector: Vec<String>,
    #[prost(string, repeated, tag = "8")]
    #[serde(alias = "trace_id_selector")]
    pub trace_id_selector: Vec<String>,
}

/// `querier.v1.SelectSeriesRequest`; `step` is in seconds.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SelectSeriesRequest {
    #[prost(string, tag = "1")]
    #[serde(rename = "profileTypeID", alias = "profile_typeID")]
    pub profile_type_id: String,
    #[prost(string, tag = "2")]
    #[serde(alias = "label_selector")]
    pub label_selector: String,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub end: i64,
    #[prost(string, repeated, tag = "5")]
    #[serde(alias = "group_by")]
    pub group_by: Vec<String>,
    #[prost(double, tag = "6")]
    #[serde(with = "json::double")]
    pub step: f64,
    #[prost(enumeration = "TimeSeriesAggregationType", optional, tag = "7")]
    #[serde(
        serialize_with = "json::opt_enumeration::serialize::<TimeSeriesAggregationType, _>",
        deserialize_with = "json::opt_enumeration::deserialize::<TimeSeriesAggregationType, _>",
        skip_serializing_if = "Option::is_none"
    )]
    pub aggregation: Option<i32>,
    #[prost(message, optional, tag = "8")]
    #[serde(
        alias = "stack_trace_selector",
        skip_serializing_if = "Option::is_none"
    )]
    pub stack_trace_selector: Option<StackTraceSelector>,
    #[prost(int64, optional, tag = "9")]
    #[serde(with = "json::opt_int64", skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[prost(enumeration = "ExemplarType", tag = "10")]
    #[serde(
        alias = "exemplar_type",
        serialize_with = "json::enumeration::serialize::<ExemplarType, _>",
        deserialize_with = "json::enumeration::deserialize::<ExemplarType, _>"
    )]
    pub exemplar_type: i32,
}

/// `querier.v1.SelectSeriesResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectSeriesResponse {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<Series>,
}

/// `querier.v1.DiffRequest`: both sides must select the same profile type.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct DiffRequest {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left: Option<SelectMergeStacktracesRequest>,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub right: Option<SelectMergeStacktracesRequest>,
}

/// `querier.v1.DiffResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct DiffResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flamegraph: Option<FlameGraphDiff>,
}
