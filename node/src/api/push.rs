//! `push.v1.PusherService/Push` over Connect (unary, `application/proto` or `application/json`,
//! gzip request bodies): what pyroscope-io ≥ 1.0, the `pyroscope` crate ≥ 2.0, Grafana Alloy and
//! profilecli send. Each raw sample (a whole pprof) is decoded on its own; if none decodes, the
//! request fails with every reason; otherwise the valid ones are stored.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use firn_storage::{Payload, WriteRequest};
use prost::Message;
use serde::Deserialize;

use crate::api::error::error_chain;
use crate::api::{AppState, content_decoded, tenant};
use crate::error::{Error, Result};
use crate::time::now;

/// `push.v1.PushRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<RawProfileSeries>,
}

/// `push.v1.RawProfileSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct RawProfileSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<RawSample>,
}

/// `types.v1.LabelPair`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `push.v1.RawSample`.
#[derive(Clone, PartialEq, Message)]
pub struct RawSample {
    #[prost(bytes = "bytes", tag = "1")]
    pub raw_profile: Bytes,
    #[prost(string, tag = "2")]
    pub id: String,
}

/// The protojson form: lowerCamelCase names (original proto names accepted too), bytes as
/// base64.
#[derive(Debug, Default, Deserialize)]
struct JsonPush {
    #[serde(default)]
    series: Vec<JsonSeries>,
}

#[derive(Debug, Default, Deserialize)]
struct JsonSeries {
    #[serde(default)]
    labels: Vec<JsonLabel>,
    #[serde(default)]
    samples: Vec<JsonSample>,
}

#[derive(Debug, Default, Deserialize)]
struct JsonLabel {
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Default, Deserialize)]
struct JsonSample {
    #[serde(default, alias = "raw_profile", rename = "rawProfile")]
    raw_profile: String,
}

pub async fn push(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let tenant = tenant(&headers)?;
    let json = is_json(&headers)?;
    let body = content_decoded(&headers, body, state.max_request_bytes)?;
    let request = if json {
        from_json(&body)?
    } else {
        PushRequest::decode(body.as_ref())
            .map_err(|e| Error::BadRequest(format!("PushRequest is not valid protobuf: {e}")))?
    };
    let received = now();
    let mut errors = Vec::new();
    let mut stored = 0usize;
    let mut total = 0usize;
    for (s, series) in request.series.into_iter().enumerate() {
        let labels: Vec<(String, String)> = series
            .labels
            .into_iter()
            .map(|l| (l.name, l.value))
            .collect();
        for (i, sample) in series.samples.into_iter().enumerate() {
            total += 1;
            let write = WriteRequest {
                tenant: tenant.clone(),
                labels: labels.clone(),
                payload: Payload::Pprof(sample.raw_profile),
                received_at: received,
            };
            match state.writer.write(write).await {
                Ok(_) => stored += 1,
                Err(e) if e.code().1.is_client_error() => {
                    errors.push(format!("series[{s}].samples[{i}]: {}", error_chain(&e)));
                }
                Err(e) => return Err(e),
            }
        }
    }
    if stored == 0 && !errors.is_empty() {
        return Err(Error::BadRequest(errors.join("; ")));
    }
    if !errors.is_empty() {
        tracing::warn!(stored, rejected = errors.len(), total, first = %errors[0], "push partly rejected");
    }
    Ok(if json {
        ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/proto")], Bytes::new()).into_response()
    })
}

/// Connect unary: `application/proto` (or `application/x-protobuf`) or `application/json`.
fn is_json(headers: &HeaderMap) -> Result<bool> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/json" => Ok(true),
        "application/proto" | "application/x-protobuf" | "application/protobuf" => Ok(false),
        "application/grpc" | "application/grpc+proto" | "application/grpc-web+proto" => {
            Err(Error::UnsupportedMediaType(format!(
                "Content-Type {media}: gRPC and gRPC-Web are not served yet; use Connect (application/proto or application/json)"
            )))
        }
        other => Err(Error::UnsupportedMediaType(format!(
            "Content-Type {other:?} is not a Connect codec; use application/proto or application/json"
        ))),
    }
}

fn from_json(body: &[u8]) -> Result<PushRequest> {
    let parsed: JsonPush = serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("PushRequest is not valid JSON: {e}")))?;
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut series = Vec::with_capacity(parsed.series.len());
    for (s, js) in parsed.series.into_iter().enumerate() {
        let mut samples = Vec::with_capacity(js.samples.len());
        for (i, sample) in js.samples.into_iter().enumerate() {
            let raw = base64.decode(sample.raw_profile.as_bytes()).map_err(|e| {
                Error::BadRequest(format!(
                    "series[{s}].samples[{i}].rawProfile is not base64: {e}"
                ))
            })?;
            samples.push(RawSample {
                raw_profile: raw.into(),
                id: String::new(),
            });
        }
        series.push(RawProfileSeries {
            labels: js
                .labels
                .into_iter()
                .map(|l| LabelPair {
                    name: l.name,
                    value: l.value,
                })
                .collect(),
            samples,
        });
    }
    Ok(PushRequest { series })
}
