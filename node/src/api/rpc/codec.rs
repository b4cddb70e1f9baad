//! A call's message bytes: the request body read within the limit, unframed and
//! decompressed, decoded as protobuf or protojson; the response encoded and, for Connect
//! clients that accept it, gzipped. Work on large messages runs on the blocking pool.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use futures::StreamExt;

use super::{Codec, Message, Protocol, Wire, grpc};
use crate::api::gunzip;
use crate::error::{Error, Result};

/// Messages past this size are decoded and encoded on the blocking pool.
const INLINE_BYTES: usize = 64 << 10;
/// Connect responses at least this large are gzipped for clients that accept gzip.
const COMPRESS_BYTES: usize = 1 << 10;

/// The request body, at most `max_bytes` as sent.
pub(super) async fn read_body(body: Body, headers: &HeaderMap, max_bytes: usize) -> Result<Bytes> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = declared.filter(|&len| len > max_bytes) {
        return Err(Error::TooLarge {
            what: "request body",
            bytes: len,
            limit: max_bytes,
        });
    }
    let mut stream = body.into_data_stream();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| Error::BadRequest(format!("reading the request body failed: {e}")))?;
        total = total.saturating_add(chunk.len());
        if total > max_bytes {
            return Err(Error::TooLarge {
                what: "request body (read so far)",
                bytes: total,
                limit: max_bytes,
            });
        }
        chunks.push(chunk);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => chunks.concat().into(),
    })
}

/// The request message: unframed (gRPC), decompressed, decoded.
pub(super) async fn decode<Req: Message>(
    wire: Wire,
    headers: &HeaderMap,
    body: Bytes,
    max_bytes: usize,
) -> Result<Req> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let (bytes, encoding) = match wire.protocol {
        Protocol::Connect => {
            let encoding =
                header("content-encoding").or_else(|| header("connect-content-encoding"));
            (body, encoding)
        }
        Protocol::Grpc | Protocol::GrpcWeb => {
            let unframed = grpc::unframe(body, max_bytes)?;
            let encoding = header("grpc-encoding");
            if !unframed.compressed {
                (unframed.message, None)
            } else if encoding.as_deref().is_none_or(|e| e == "identity") {
                return Err(Error::BadRequest(
                    "the gRPC message is flagged compressed but grpc-encoding names no compression"
                        .into(),
                ));
            } else {
                (unframed.message, encoding)
            }
        }
    };
    let gzipped = match encoding.as_deref() {
        None | Some("identity") | Some("") => false,
        Some("gzip") => true,
        Some(other) => {
            return Err(Error::Unimplemented(format!(
                "request compression {other:?} is not supported; use gzip or identity"
            )));
        }
    };
    // A gzipped message is about a tenth of its decoded size.
    let size = if gzipped {
        bytes.len().saturating_mul(10)
    } else {
        bytes.len()
    };
    let work = move || -> Result<Req> {
        let bytes = if gzipped {
            gunzip(&bytes, max_bytes)?
        } else {
            bytes
        };
        match wire.codec {
            Codec::Proto => Req::decode(bytes).map_err(|e| {
                Error::BadRequest(format!(
                    "{} is not valid protobuf: {e}",
                    short_name::<Req>()
                ))
            }),
            Codec::Json => match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
                None => Ok(Req::default()),
                // serde would also take a struct from an array; protojson does not.
                Some(b'{') => {
                    let mut de = serde_json::Deserializer::from_slice(&bytes);
                    serde_path_to_error::deserialize(&mut de).map_err(|e| {
                        let name = short_name::<Req>();
                        let path = e.path().to_string();
                        let inner = e.into_inner();
                        Error::BadRequest(match inner.classify() {
                            serde_json::error::Category::Data if path != "." => {
                                format!("{name}.{path}: {inner}")
                            }
                            serde_json::error::Category::Data => {
                                format!("{name} must be a JSON object: {inner}")
                            }
                            _ => format!("{name} is not valid JSON: {inner}"),
                        })
                    })
                }
                Some(_) => Err(Error::BadRequest(format!(
                    "{} must be a JSON object",
                    short_name::<Req>()
                ))),
            },
        }
    };
    off_runtime(size, work).await
}

/// The response message's bytes, gzipped if `gzip` and large enough; says whether it was.
pub(super) async fn encode<Resp: Message>(
    wire: Wire,
    response: Resp,
    gzip: bool,
) -> Result<(Bytes, bool)> {
    let size = prost::Message::encoded_len(&response);
    off_runtime(size, move || {
        let bytes: Vec<u8> = match wire.codec {
            Codec::Proto => prost::Message::encode_to_vec(&response),
            Codec::Json => serde_json::to_vec(&response).map_err(|e| {
                Error::Internal(format!("encoding {} as JSON: {e}", short_name::<Resp>()))
            })?,
        };
        if gzip && bytes.len() >= COMPRESS_BYTES {
            use std::io::Write;
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(bytes.len() / 4),
                flate2::Compression::fast(),
            );
            encoder
                .write_all(&bytes)
                .and_then(|()| encoder.finish())
                .map(|gz| (Bytes::from(gz), true))
                .map_err(|e| Error::Internal(format!("gzip of the response failed: {e}")))
        } else {
            Ok((Bytes::from(bytes), false))
        }
    })
    .await
}

/// Runs `work` inline when `size` is small, else on the blocking pool.
async fn off_runtime<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if size <= INLINE_BYTES {
        return work();
    }
    crate::api::blocking(work).await
}

pub(super) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| p.replace(' ', "") == "q=0");
            coding.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// `SeriesRequest` for `firn_node::api::querier::messages::SeriesRequest`.
fn short_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}
