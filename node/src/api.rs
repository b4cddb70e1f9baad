//! The HTTP surface: one router for every protocol on one port (HTTP/1.1 and h2c).
//!
//! ```text
//!  POST /push.v1.PusherService/Push   Pyroscope Push over Connect (proto or JSON, gzip bodies)
//!  POST /ingest, /pyroscope/ingest     Pyroscope legacy ingest (pprof, multipart, folded, lines)
//!  GET  /api/v1/merge                  Firn's API: merged profile as folded, top, pprof or flame graph
//!  POST /api/v1/sql                    read-only SQL over one tenant's samples
//!  GET  /metrics                        Prometheus
//!  GET  /ready, /healthz               probes
//! ```

pub mod error;
pub mod ingest;
pub mod push;
pub mod query;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use firn_query::QueryEngine;
use firn_storage::TenantId;

use crate::error::{Error, Result};
use crate::metrics::{Gauges, Metrics};
use crate::writer::Writer;

/// The tenant when a request names none (`--auth=none`, as in Pyroscope).
pub const ANONYMOUS: &str = "anonymous";

#[derive(Clone, Debug)]
pub struct AppState {
    pub writer: Writer,
    pub engine: Arc<QueryEngine>,
    pub metrics: Arc<Metrics>,
    pub max_request_bytes: usize,
}

pub fn router(state: AppState) -> Router {
    let limit = state.max_request_bytes;
    Router::new()
        .route("/push.v1.PusherService/Push", post(push::push))
        .route("/ingest", post(ingest::ingest))
        .route("/pyroscope/ingest", post(ingest::ingest))
        .route("/api/v1/merge", get(query::merge))
        .route("/api/v1/sql", post(query::sql))
        .route("/metrics", get(metrics))
        .route("/ready", get(|| async { "ready\n" }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Counts and times every request by its route (the router's path, so the set is bounded).
async fn track(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .record_request(&route, response.status().as_u16(), started.elapsed());
    response
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> String {
    let store = state.engine.store();
    let manifest = store.manifest();
    state.metrics.render(&Gauges {
        buffer_bytes: store.buffer_bytes() as u64,
        buffer_samples: store.buffer_samples() as u64,
        log_bytes: state.writer.log_bytes(),
        blocks: manifest.blocks.len() as u64,
        flushed_seq: manifest.flushed_seq.0,
        raft: state.writer.raft().status(),
    })
}

/// A request body with `Content-Encoding: gzip` honoured, bounded by `max_bytes` decompressed.
pub fn content_decoded(
    headers: &HeaderMap,
    body: axum::body::Bytes,
    max_bytes: usize,
) -> Result<axum::body::Bytes> {
    use std::io::Read;
    let gzip = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(body);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body.as_ref())
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::BadRequest(format!("request body is not valid gzip: {e}")))?;
    if out.len() > max_bytes {
        return Err(Error::TooLarge {
            what: "request body decompressed",
            bytes: out.len(),
            limit: max_bytes,
        });
    }
    Ok(out.into())
}

/// The tenant of a request: `X-Scope-OrgID`, or [`ANONYMOUS`].
pub fn tenant(headers: &HeaderMap) -> Result<TenantId> {
    let id = headers
        .get("x-scope-orgid")
        .map(|v| {
            v.to_str()
                .map_err(|_| Error::BadRequest("X-Scope-OrgID is not valid ASCII".into()))
        })
        .transpose()?
        .unwrap_or(ANONYMOUS);
    Ok(TenantId::new(id)?)
}
