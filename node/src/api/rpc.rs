//! One RPC layer for every protobuf service: a method is written once, as
//! `async fn(Call, Request) -> Result<Response>`, and [`unary`] serves it on
//! `/<package>.<Service>/<Method>` over three protocols, told apart by `Content-Type`:
//!
//! - **Connect unary**: `application/proto` or `application/json` (protojson, see [`json`]);
//!   request bodies compressed with `Content-Encoding: gzip` (or `Connect-Content-Encoding`);
//!   responses gzipped when the client accepts gzip; errors as Connect error JSON with the
//!   code's HTTP status ([`crate::api::error`]); `Connect-Timeout-Ms` honoured.
//! - **gRPC** over h2c: `application/grpc`, `application/grpc+proto`, `application/grpc+json`;
//!   one length-prefixed message each way, compressed when its flag is set and
//!   `grpc-encoding: gzip`; always HTTP 200, the outcome in `grpc-status` and `grpc-message`
//!   trailers, the code mapped from the same [`Code`](crate::api::error::Code) as Connect's;
//!   `grpc-timeout` honoured.
//! - **gRPC-Web**: `application/grpc-web[+proto|+json]`, the gRPC frames over HTTP/1.1 with the
//!   trailers as a last frame.
//!
//! ```text
//!  request ─► protocol + codec ─► tenant ─► body (≤ max request bytes)
//!          ─► unframe / decompress (≤ max request bytes) ─► decode ─► method (deadline)
//!          ─► encode ─► frame / compress ─► 200, or the error in the protocol's own shape
//! ```
//!
//! Every message is bounded by `--max-request-bytes`, compressed and decompressed. Decoding
//! large messages and encoding responses run on the blocking pool, off the I/O runtime.

mod codec;
pub mod grpc;
pub mod json;

use std::future::Future;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use firn_storage::TenantId;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::error::error_chain;
use crate::api::{AppState, OutcomeStatus, tenant};
use crate::error::{Error, Result};

/// A protobuf message that also has a protojson form.
pub trait Message:
    prost::Message + Default + Serialize + DeserializeOwned + Send + 'static
{
}

impl<T> Message for T where
    T: prost::Message + Default + Serialize + DeserializeOwned + Send + 'static
{
}

/// What a method gets besides its request: the node and the caller's tenant.
#[derive(Clone, Debug)]
pub struct Call {
    pub state: AppState,
    pub tenant: TenantId,
    /// The request's `Idempotency-Key` (Connect header or gRPC metadata), tenant-scoped.
    pub idempotency_key: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Connect,
    Grpc,
    GrpcWeb,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    Proto,
    Json,
}

/// How a call travels: protocol and message codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wire {
    protocol: Protocol,
    codec: Codec,
}

impl Wire {
    fn from_headers(headers: &HeaderMap) -> Result<Self> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let (protocol, codec) = match media.as_str() {
            "application/proto" | "application/x-protobuf" | "application/protobuf" => {
                (Protocol::Connect, Codec::Proto)
            }
            "application/json" => (Protocol::Connect, Codec::Json),
            "application/grpc" | "application/grpc+proto" => (Protocol::Grpc, Codec::Proto),
            "application/grpc+json" => (Protocol::Grpc, Codec::Json),
            "application/grpc-web" | "application/grpc-web+proto" => {
                (Protocol::GrpcWeb, Codec::Proto)
            }
            "application/grpc-web+json" => (Protocol::GrpcWeb, Codec::Json),
            other => {
                return Err(Error::UnsupportedMediaType(format!(
                    "Content-Type {other:?} is not served here; use Connect (application/proto, \
                     application/json), gRPC (application/grpc[+proto|+json]) or gRPC-Web \
                     (application/grpc-web[+proto|+json])"
                )));
            }
        };
        Ok(Self { protocol, codec })
    }

    fn content_type(self) -> &'static str {
        match (self.protocol, self.codec) {
            (Protocol::Connect, Codec::Proto) => "application/proto",
            (Protocol::Connect, Codec::Json) => "application/json",
            (Protocol::Grpc, Codec::Proto) => "application/grpc",
            (Protocol::Grpc, Codec::Json) => "application/grpc+json",
            (Protocol::GrpcWeb, Codec::Proto) => "application/grpc-web+proto",
            (Protocol::GrpcWeb, Codec::Json) => "application/grpc-web+json",
        }
    }
}

/// Serves `method` as a unary RPC over Connect, gRPC and gRPC-Web (`POST` only).
pub fn unary<Req, Resp, F, Fut>(method: F) -> MethodRouter<AppState>
where
    Req: Message,
    Resp: Message,
    F: Fn(Call, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp>> + Send + 'static,
{
    axum::routing::post(move |State(state): State<AppState>, request: Request| {
        let method = method.clone();
        async move { serve(state, request, method).await }
    })
}

async fn serve<Req, Resp, F, Fut>(state: AppState, request: Request, method: F) -> Response
where
    Req: Message,
    Resp: Message,
    F: Fn(Call, Req) -> Fut,
    Fut: Future<Output = Result<Resp>>,
{
    let (parts, body) = request.into_parts();
    let wire = match Wire::from_headers(&parts.headers) {
        Ok(wire) => wire,
        Err(e) => return e.into_response(),
    };
    let headers = &parts.headers;
    let outcome = async {
        let tenant = tenant(headers)?;
        let idempotency_key = crate::api::idempotency_key(headers, &tenant)?;
        let deadline = deadline(wire, headers)?;
        let run = async {
            let max_bytes = state.max_request_bytes;
            let body = codec::read_body(body, headers, max_bytes).await?;
            let request: Req = codec::decode(wire, headers, body, max_bytes).await?;
            method(
                Call {
                    state,
                    tenant,
                    idempotency_key,
                },
                request,
            )
            .await
        };
        match deadline {
            Some(limit) => {
                tokio::time::timeout(limit, run)
                    .await
                    .map_err(|_| Error::DeadlineExceeded {
                        millis: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
                    })?
            }
            None => run.await,
        }
    }
    .await;
    let gzip = wire.protocol == Protocol::Connect && codec::accepts_gzip(headers);
    match outcome {
        Ok(response) => match codec::encode(wire, response, gzip).await {
            Ok((bytes, gzipped)) => ok_response(wire, bytes, gzipped),
            Err(e) => error_response(wire, e),
        },
        Err(e) => error_response(wire, e),
    }
}

/// The call's deadline: `Connect-Timeout-Ms` or `grpc-timeout`.
fn deadline(wire: Wire, headers: &HeaderMap) -> Result<Option<Duration>> {
    let (name, value) = match wire.protocol {
        Protocol::Connect => ("connect-timeout-ms", headers.get("connect-timeout-ms")),
        Protocol::Grpc | Protocol::GrpcWeb => ("grpc-timeout", headers.get("grpc-timeout")),
    };
    let Some(value) = value else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Error::BadRequest(format!("{name} is not ASCII")))?;
    match wire.protocol {
        Protocol::Connect => {
            if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::BadRequest(format!(
                    "Connect-Timeout-Ms {text:?} is not 1-10 digits"
                )));
            }
            let ms: u64 = text
                .parse()
                .map_err(|_| Error::BadRequest(format!("Connect-Timeout-Ms {text:?}")))?;
            Ok(Some(Duration::from_millis(ms)))
        }
        Protocol::Grpc | Protocol::GrpcWeb => grpc::parse_timeout(text).map(Some),
    }
}

fn ok_response(wire: Wire, message: Bytes, gzipped: bool) -> Response {
    match wire.protocol {
        Protocol::Connect => {
            let mut response = (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(wire.content_type()),
                )],
                message,
            )
                .into_response();
            if gzipped {
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            response
        }
        Protocol::Grpc | Protocol::GrpcWeb => {
            grpc_response(wire, grpc::frame(&message), grpc::status_trailers(0, None))
        }
    }
}

/// An error answered in the shape of the protocol the request's `Content-Type` names
/// (Connect's when it names none served here).
pub fn error_for(headers: &HeaderMap, error: Error) -> Response {
    let wire = Wire::from_headers(headers).unwrap_or(Wire {
        protocol: Protocol::Connect,
        codec: Codec::Json,
    });
    error_response(wire, error)
}

fn error_response(wire: Wire, error: Error) -> Response {
    match wire.protocol {
        Protocol::Connect => error.into_response(),
        Protocol::Grpc | Protocol::GrpcWeb => {
            let (code, status) = error.code();
            let message = error_chain(&error);
            error.log_if_internal(&message);
            let trailers = grpc::status_trailers(code.grpc(), Some(&message));
            let mut response = grpc_response(wire, Bytes::new(), trailers);
            // gRPC answers 200 whatever happened; metrics count the status it stands for.
            response.extensions_mut().insert(OutcomeStatus(status));
            response
        }
    }
}

/// HTTP 200 with the framed message (if any) and the trailers, in the protocol's form.
fn grpc_response(wire: Wire, framed: Bytes, trailers: HeaderMap) -> Response {
    let body = match wire.protocol {
        Protocol::GrpcWeb => {
            let mut bytes = framed.to_vec();
            bytes.extend_from_slice(&grpc::trailers_frame(&trailers));
            Body::from(bytes)
        }
        _ => Body::new(grpc::TrailersBody::new(Some(framed), trailers)),
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(wire.content_type()),
    );
    headers.insert("grpc-accept-encoding", HeaderValue::from_static("gzip"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn content_types_pick_protocol_and_codec() {
        for (ct, protocol, codec) in [
            ("application/proto", Protocol::Connect, Codec::Proto),
            (
                "application/json; charset=utf-8",
                Protocol::Connect,
                Codec::Json,
            ),
            ("application/grpc", Protocol::Grpc, Codec::Proto),
            ("application/grpc+proto", Protocol::Grpc, Codec::Proto),
            ("application/grpc+json", Protocol::Grpc, Codec::Json),
            (
                "application/grpc-web+proto",
                Protocol::GrpcWeb,
                Codec::Proto,
            ),
        ] {
            let wire = Wire::from_headers(&headers(&[("content-type", ct)])).expect(ct);
            assert_eq!((wire.protocol, wire.codec), (protocol, codec), "{ct}");
        }
        for ct in ["text/plain", "application/grpc+thrift", ""] {
            let e = Wire::from_headers(&headers(&[("content-type", ct)])).expect_err(ct);
            assert_eq!(e.code().1, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
    }

    #[test]
    fn gzip_acceptance_and_deadlines() {
        assert!(codec::accepts_gzip(&headers(&[(
            "accept-encoding",
            "br, gzip"
        )])));
        assert!(!codec::accepts_gzip(&headers(&[(
            "accept-encoding",
            "gzip;q=0"
        )])));
        assert!(!codec::accepts_gzip(&headers(&[])));
        let connect = Wire {
            protocol: Protocol::Connect,
            codec: Codec::Proto,
        };
        let grpc = Wire {
            protocol: Protocol::Grpc,
            codec: Codec::Proto,
        };
        assert_eq!(
            deadline(connect, &headers(&[("connect-timeout-ms", "1500")])).expect("ms"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            deadline(grpc, &headers(&[("grpc-timeout", "2S")])).expect("grpc"),
            Some(Duration::from_secs(2))
        );
        assert!(deadline(connect, &headers(&[("connect-timeout-ms", "soon")])).is_err());
        assert_eq!(deadline(grpc, &headers(&[])).expect("none"), None);
    }
}
