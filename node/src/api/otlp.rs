//! OpenTelemetry profiles (OTLP, proto v1.10, `v1development`), as the OpenTelemetry eBPF
//! profiler and the Collector export them: gRPC
//! `opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export` (served by
//! [`crate::api::rpc`], gRPC-Web and Connect included) and OTLP/HTTP
//! `POST /v1development/profiles` with a protobuf (`application/x-protobuf`) or JSON body,
//! gzip or not, answered in the request's encoding; an error is a `google.rpc.Status` in
//! that encoding with 400 (malformed), 429 (a limit) or 5xx, as the OTLP spec has it.
//!
//! Each OTLP profile becomes one pprof profile stored as Push stores one ([`convert`] has the
//! mapping: resource and scope attributes become labels, `service.name` `service_name`,
//! sample attributes pprof labels, links `trace_id`/`span_id`). The whole request is checked
//! before anything is stored: a table whose index 0 is not the zero value, or an index past
//! its table, fails it with the path of the field.

mod check;
pub mod convert;
pub mod messages;
mod pprof;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;

use crate::api::error::error_chain;
use crate::api::push::store_series;
use crate::api::rpc::Call;
use crate::api::{AppState, OutcomeStatus, blocking, gunzip, idempotency_key, tenant};
use crate::error::{Error, Result};
use messages::{ExportProfilesServiceRequest, ExportProfilesServiceResponse, Status};

/// OTLP/HTTP's path for profiles.
pub const HTTP_PATH: &str = "/v1development/profiles";

/// `Export`: checks and converts the whole request, then stores its profiles.
pub async fn export(
    call: Call,
    request: ExportProfilesServiceRequest,
) -> Result<ExportProfilesServiceResponse> {
    let series = blocking(move || convert::to_series(request, crate::time::now())).await?;
    if !series.is_empty() {
        store_series(&call, series).await?;
    }
    Ok(ExportProfilesServiceResponse::default())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Proto,
    Json,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Result<Self> {
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Proto),
            "application/json" => Ok(Encoding::Json),
            other => Err(Error::UnsupportedMediaType(format!(
                "Content-Type {other:?} is not OTLP/HTTP; send application/x-protobuf or application/json"
            ))),
        }
    }
}

/// An OTLP/HTTP error response to a request with these headers (a refused credential).
pub fn error_for(headers: &HeaderMap, error: Error) -> Response {
    respond(Encoding::of(headers).unwrap_or(Encoding::Proto), Err(error))
}

/// `POST /v1development/profiles`: OTLP/HTTP.
pub async fn http_export(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let encoding = match Encoding::of(&headers) {
        Ok(encoding) => encoding,
        Err(e) => return respond(Encoding::Proto, Err(e)),
    };
    let outcome = async {
        let tenant = tenant(&headers)?;
        let idempotency_key = idempotency_key(&headers, &tenant)?;
        let max = state.max_request_bytes;
        let gzip = headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let gzipped = match gzip.as_deref() {
            None | Some("identity") => false,
            Some("gzip") => true,
            Some(other) => {
                return Err(Error::UnsupportedMediaType(format!(
                    "Content-Encoding {other:?} is not served; send gzip or none"
                )));
            }
        };
        let request = blocking(move || {
            let body = if gzipped { gunzip(&body, max)? } else { body };
            decode(encoding, &body)
        })
        .await?;
        export(
            Call {
                state,
                tenant,
                idempotency_key,
            },
            request,
        )
        .await
    }
    .await;
    respond(encoding, outcome)
}

fn decode(encoding: Encoding, body: &[u8]) -> Result<ExportProfilesServiceRequest> {
    match encoding {
        Encoding::Proto => ExportProfilesServiceRequest::decode(body).map_err(|e| {
            Error::BadRequest(format!(
                "the body is not an ExportProfilesServiceRequest: {}",
                error_chain(&e)
            ))
        }),
        Encoding::Json => {
            let mut de = serde_json::Deserializer::from_slice(body);
            serde_path_to_error::deserialize(&mut de).map_err(|e| {
                Error::BadRequest(format!(
                    "the body is not an ExportProfilesServiceRequest: {}: {}",
                    e.path(),
                    e.inner()
                ))
            })
        }
    }
}

fn respond(encoding: Encoding, outcome: Result<ExportProfilesServiceResponse>) -> Response {
    let (status, body) = match outcome {
        Ok(response) => (StatusCode::OK, encode(encoding, &response)),
        Err(e) => {
            let (code, status) = e.code();
            if status.is_server_error() {
                tracing::warn!(error = %error_chain(&e), "OTLP export failed");
            }
            let message = Status {
                code: i32::from(code.grpc()),
                message: error_chain(&e),
            };
            (status, encode(encoding, &message))
        }
    };
    let content_type = match encoding {
        Encoding::Proto => "application/x-protobuf",
        Encoding::Json => "application/json",
    };
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.extensions_mut().insert(OutcomeStatus(status));
    response
}

fn encode<M: Message + serde::Serialize>(encoding: Encoding, message: &M) -> Vec<u8> {
    match encoding {
        Encoding::Proto => message.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(message).unwrap_or_default(),
    }
}
