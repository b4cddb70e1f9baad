//! `types.v1`: the Pyroscope messages that Push and the querier share, declared with prost's
//! derive (field numbers from `api/types/v1/types.proto`) and serde for protojson.

use serde::{Deserialize, Serialize};

use crate::api::rpc::json::{self, ProtoEnum};

/// `types.v1.LabelPair`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

impl LabelPair {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// `types.v1.ProfileAnnotation`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileAnnotation {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `types.v1.ProfileType`: the five-part ID and its parts.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProfileType {
    #[prost(string, tag = "1")]
    #[serde(rename = "ID")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "4")]
    #[serde(alias = "sample_type")]
    pub sample_type: String,
    #[prost(string, tag = "5")]
    #[serde(alias = "sample_unit")]
    pub sample_unit: String,
    #[prost(string, tag = "6")]
    #[serde(alias = "period_type")]
    pub period_type: String,
    #[prost(string, tag = "7")]
    #[serde(alias = "period_unit")]
    pub period_unit: String,
}

/// `types.v1.Labels`: one label set.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Labels {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
}

/// `types.v1.Series`: a label set and its points.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Series {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    pub points: Vec<Point>,
}

/// `types.v1.Point`: a value at a time in milliseconds. Firn keeps no exemplars (field 4).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Point {
    #[prost(double, tag = "1")]
    #[serde(with = "json::double")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub timestamp: i64,
    #[prost(message, repeated, tag = "3")]
    pub annotations: Vec<ProfileAnnotation>,
}

/// `types.v1.LabelNamesRequest`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelNamesRequest {
    #[prost(string, repeated, tag = "1")]
    pub matchers: Vec<String>,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub end: i64,
}

/// `types.v1.LabelNamesResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelNamesResponse {
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
}

/// `types.v1.LabelValuesRequest`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelValuesRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, repeated, tag = "2")]
    pub matchers: Vec<String>,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub end: i64,
}

/// `types.v1.LabelValuesResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelValuesResponse {
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
}

/// `types.v1.StackTraceSelector`: keep stacks whose root-first frames begin with `call_site`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StackTraceSelector {
    #[prost(message, repeated, tag = "1")]
    #[serde(alias = "call_site")]
    pub call_site: Vec<Location>,
    #[prost(message, optional, tag = "2")]
    #[serde(alias = "go_pgo", skip_serializing_if = "Option::is_none")]
    pub go_pgo: Option<GoPgo>,
}

/// `types.v1.Location`: a frame by function name.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Location {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `types.v1.GoPGO`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GoPgo {
    #[prost(uint32, tag = "1")]
    #[serde(alias = "keep_locations")]
    pub keep_locations: u32,
    #[prost(bool, tag = "2")]
    #[serde(alias = "aggregate_callees")]
    pub aggregate_callees: bool,
}

/// `types.v1.TimeSeriesAggregationType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum TimeSeriesAggregationType {
    Sum = 0,
    Average = 1,
}

impl ProtoEnum for TimeSeriesAggregationType {
    const NAME: &'static str = "types.v1.TimeSeriesAggregationType";
    const VALUES: &'static [(i32, &'static str)] = &[
        (0, "TIME_SERIES_AGGREGATION_TYPE_SUM"),
        (1, "TIME_SERIES_AGGREGATION_TYPE_AVERAGE"),
    ];
}

/// `types.v1.ExemplarType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ExemplarType {
    Unspecified = 0,
    None = 1,
    Individual = 2,
    Span = 3,
}

impl ProtoEnum for ExemplarType {
    const NAME: &'static str = "types.v1.ExemplarType";
    const VALUES: &'static [(i32, &'static str)] = &[
        (0, "EXEMPLAR_TYPE_UNSPECIFIED"),
        (1, "EXEMPLAR_TYPE_NONE"),
        (2, "EXEMPLAR_TYPE_INDIVIDUAL"),
        (3, "EXEMPLAR_TYPE_SPAN"),
    ];
}
