//! `push.v1.PusherService/Push`: what pyroscope-io ≥ 1.0, the `pyroscope` crate ≥ 2.0, Grafana
//! Alloy and profilecli send, served over Connect and gRPC by [`crate::api::rpc`]. Each raw
//! sample (a whole pprof, gzip or not) is decoded on its own; if none decodes, the request
//! fails with every reason; otherwise the valid ones are stored.

use axum::body::Bytes;
use firn_storage::{Payload, WriteRequest};
use serde::{Deserialize, Serialize};

use crate::api::error::error_chain;
use crate::api::rpc::{Call, json};
use crate::api::types::{LabelPair, ProfileAnnotation};
use crate::cluster::router::ClientWrite;
use crate::error::{Error, Result};
use crate::time::now;

/// Rejected samples named in an error message, at most.
const MAX_REPORTED: usize = 10;

/// `push.v1.PushRequest`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<RawProfileSeries>,
}

/// `push.v1.PushResponse`: empty.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct PushResponse {}

/// `push.v1.RawProfileSeries`. Annotations are accepted and dropped, as Pyroscope does.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RawProfileSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<RawSample>,
    #[prost(message, repeated, tag = "3")]
    pub annotations: Vec<ProfileAnnotation>,
}

/// `push.v1.RawSample`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RawSample {
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(with = "json::bytes", alias = "raw_profile")]
    pub raw_profile: Bytes,
    #[prost(string, tag = "2")]
    #[serde(rename = "ID")]
    pub id: String,
}

/// `Push`: stores every sample that decodes; fails only if none does. Every sample is one
/// write; they are routed to their shards together (one message per shard leader).
pub async fn push(call: Call, request: PushRequest) -> Result<PushResponse> {
    let series = request
        .series
        .into_iter()
        .enumerate()
        .map(|(i, s)| RawSeries {
            name: format!("series[{i}]"),
            labels: s.labels.into_iter().map(|l| (l.name, l.value)).collect(),
            samples: s.samples.into_iter().map(|r| r.raw_profile).collect(),
        })
        .collect();
    store_series(&call, series).await?;
    Ok(PushResponse {})
}

/// A series' labels and its raw pprof samples.
#[derive(Clone, Debug)]
pub struct RawSeries {
    /// Where the request holds it (`series[3]`), for errors.
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub samples: Vec<Bytes>,
}

/// Stores raw pprof samples by series (their labels, `__name__` the profile's name): every
/// sample that decodes; an error only if none does, naming the first few reasons.
pub async fn store_series(call: &Call, series: Vec<RawSeries>) -> Result<()> {
    let received = now();
    let mut writes = Vec::new();
    let mut names = Vec::new();
    for (
        s,
        RawSeries {
            name,
            labels,
            samples,
        },
    ) in series.into_iter().enumerate()
    {
        for (i, raw_profile) in samples.into_iter().enumerate() {
            writes.push(ClientWrite {
                request: WriteRequest {
                    tenant: call.tenant.clone(),
                    labels: labels.clone(),
                    payload: Payload::Pprof(raw_profile),
                    received_at: received,
                },
                // One key per sample: a retried request stores each sample once.
                key: call
                    .idempotency_key
                    .as_ref()
                    .map(|k| format!("{k}/{s}/{i}")),
            });
            names.push((name.clone(), i));
        }
    }
    // The first few reasons, and how many samples were rejected in all.
    let mut errors = Vec::new();
    let mut rejected = 0usize;
    let mut stored = 0usize;
    let mut failure = None;
    let mut limited = false;
    for ((name, i), result) in names
        .into_iter()
        .zip(call.state.cluster.write(writes).await)
    {
        match result {
            Ok(_) => stored += 1,
            Err(e) if e.code().1.is_client_error() => {
                rejected += 1;
                limited |= e.code().1 == axum::http::StatusCode::TOO_MANY_REQUESTS;
                if errors.len() < MAX_REPORTED {
                    errors.push(format!("{name}.samples[{i}]: {}", error_chain(&e)));
                }
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if rejected > 0 {
        let mut message = errors.join("; ");
        if rejected > errors.len() {
            message.push_str(&format!("; and {} more", rejected - errors.len()));
        }
        if stored == 0 {
            // Past a tenant's limit, the client is told to back off (429), not that its
            // profiles are malformed.
            return Err(if limited {
                Error::Limit(message)
            } else {
                Error::BadRequest(message)
            });
        }
        tracing::warn!(stored, rejected, first = %message, "push partly rejected");
    }
    Ok(())
}
