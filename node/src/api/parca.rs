//! Parca's APIs: the write side, `parca.profilestore.v1alpha1.ProfileStoreService/WriteRaw`,
//! as Parca Agent sends it, served over gRPC and gRPC-Web (and Connect) by
//! [`crate::api::rpc`], and as JSON at Parca's REST path `POST /profiles/writeraw`; the query
//! side, `parca.query.v1alpha1.QueryService`, in [`query`]. The messages follow
//! `proto/parca/`; wire facts: `../shared/reference/wire-apis.md` §3.
//!
//! A series' `__name__` label is required and names the profile (`parca_agent`,
//! `process_cpu`); each sample is a whole pprof, stored as Push stores one. Parca's deprecated
//! `tenant` field is ignored: the tenant is the request's, as everywhere.

pub mod messages;
pub mod metastore;
pub mod query;
pub mod report;

use axum::body::Bytes;
use serde::{Deserialize, Serialize};

use crate::api::push::{RawSeries, store_series};
use crate::api::rpc::{Call, json};
use crate::error::{Error, Result};

/// Series one request may carry, and samples in all.
const MAX_SERIES: usize = 10_000;

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct WriteRawRequest {
    #[prost(string, tag = "1")]
    pub tenant: String,
    #[prost(message, repeated, tag = "2")]
    pub series: Vec<RawProfileSeries>,
    #[prost(bool, tag = "3")]
    pub normalized: bool,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct WriteRawResponse {}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RawProfileSeries {
    #[prost(message, optional, tag = "1")]
    pub labels: Option<LabelSet>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<RawSample>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelSet {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RawSample {
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(with = "json::bytes", alias = "raw_profile")]
    pub raw_profile: Bytes,
    /// Per mapping; Firn stores addresses as the profile has them.
    #[prost(message, repeated, tag = "2")]
    pub executable_info: Vec<ExecutableInfo>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExecutableInfo {
    #[prost(uint32, tag = "1")]
    pub elf_type: u32,
    #[prost(message, optional, tag = "2")]
    pub load_segment: Option<LoadSegment>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadSegment {
    #[prost(uint64, tag = "1")]
    #[serde(with = "json::uint64")]
    pub offset: u64,
    #[prost(uint64, tag = "2")]
    #[serde(with = "json::uint64")]
    pub vaddr: u64,
}

/// `WriteRaw`: every sample that decodes is stored; the request fails only if none does.
pub async fn write_raw(call: Call, request: WriteRawRequest) -> Result<WriteRawResponse> {
    if request.series.len() > MAX_SERIES {
        return Err(Error::BadRequest(format!(
            "series has {} entries, the limit is {MAX_SERIES}",
            request.series.len()
        )));
    }
    let mut series = Vec::with_capacity(request.series.len());
    for (i, s) in request.series.into_iter().enumerate() {
        let labels: Vec<(String, String)> = s
            .labels
            .map(|l| l.labels.into_iter().map(|l| (l.name, l.value)).collect())
            .unwrap_or_default();
        if !labels
            .iter()
            .any(|(name, v)| name == "__name__" && !v.is_empty())
        {
            return Err(Error::BadRequest(format!(
                "series[{i}].labels: missing __name__ label (the profile's name, such as parca_agent)"
            )));
        }
        series.push(RawSeries {
            name: format!("series[{i}]"),
            labels,
            samples: s.samples.into_iter().map(|r| r.raw_profile).collect(),
        });
    }
    store_series(&call, series).await?;
    Ok(WriteRawResponse {})
}
