//! The HTTP surface: one router for every protocol on one port (HTTP/1.1 and h2c).
//!
//! ```text
//!  POST /push.v1.PusherService/Push             Pyroscope Push           ┐ Connect (proto, JSON),
//!  POST /parca.profilestore.v1alpha1.ProfileStoreService/WriteRaw         │ gRPC, gRPC-Web: one
//!                                               Parca Agent's writes      │ handler each (rpc.rs)
//!  POST /querier.v1.QuerierService/<Method>      Pyroscope querier:       │
//!       ProfileTypes LabelNames LabelValues Series SelectMergeStacktraces │
//!       SelectMergeSpanProfile SelectMergeProfile SelectSeries Diff       │
//!  POST /parca.query.v1alpha1.QueryService/<Method>  Parca queries:      │
//!       Query QueryRange ProfileTypes Labels Values                       ┘
//!  POST /opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export
//!                                               OTLP profiles over gRPC (rpc.rs)
//!  POST /v1development/profiles                 OTLP/HTTP profiles, protobuf or JSON (otlp.rs)
//!  POST /ingest, /pyroscope/ingest              Pyroscope legacy ingest (pprof, multipart, folded, lines)
//!  GET  /pyroscope/render, render-diff, labels, label-values   Pyroscope legacy queries (legacy.rs)
//!  GET  /api/v1/merge                           Firn: merged profile as folded, top, pprof or flame graph
//!  GET  /api/v1/series                          Firn: time series by step, grouped by labels
//!  GET  /api/v1/labels                          Firn: label names
//!  GET  /api/v1/labels/{name}/values            Firn: values of one label
//!  GET  /api/v1/profile-types                   Firn: profile types with data
//!  GET  /api/v1/diff                            Firn: two selections as a diff flame graph or folded
//!  POST /api/v1/sql                             Firn: read-only SQL over one tenant's samples
//!  GET  /api/v1/cluster                         Firn: nodes, shards, replicas and leaders
//!  DELETE /api/v1/cluster/nodes/{id}            Firn: remove a node (its replicas move first)
//!  /api/v1/admin/...                            Firn: tenants, tokens, limits, usage (admin.rs)
//!  GET  /metrics                                 Prometheus
//!  GET  /ready, /healthz                        probes
//! ```
//!
//! [`authorize`] runs before every route (node-to-node gRPC included): it finds the caller
//! from the request's credentials and binds `X-Scope-OrgID` to the caller's tenant
//! (`crate::tenancy::auth`).
//!
//! Wire types are converted to the engine's at the edge: `types.rs` (`types.v1`), `google.rs`
//! (`google.v1`), `querier/convert.rs`; `selection.rs` checks selectors and time ranges for
//! both query APIs.

pub mod admin;
pub mod cluster;
pub mod error;
pub mod google;
pub mod ingest;
pub mod legacy;
pub mod otlp;
pub mod parca;
pub mod protobuf;
pub mod push;
pub mod querier;
pub mod query;
pub mod rpc;
pub mod selection;
pub mod types;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use firn_query::Coordinator;
use firn_storage::TenantId;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::metrics::{Gauges, Metrics};

/// The tenant when a request names none (`--auth=none`, as in Pyroscope).
pub const ANONYMOUS: &str = "anonymous";

/// The HTTP status a response stands for when it is not its own: gRPC answers 200 whatever
/// happened, so request metrics count this instead.
#[derive(Clone, Copy, Debug)]
pub struct OutcomeStatus(pub axum::http::StatusCode);

#[derive(Clone, Debug)]
pub struct AppState {
    /// Writes go through the cluster (split by shard, committed by each shard's leader).
    pub cluster: Arc<Cluster>,
    /// Queries go through the coordinator (every shard, at its read index).
    pub query: Arc<Coordinator>,
    pub metrics: Arc<Metrics>,
    pub max_request_bytes: usize,
}

pub fn router(state: AppState) -> Router {
    let limit = state.max_request_bytes;
    Router::new()
        .route("/push.v1.PusherService/Push", rpc::unary(push::push))
        .route(
            "/parca.profilestore.v1alpha1.ProfileStoreService/WriteRaw",
            rpc::unary(parca::write_raw),
        )
        // Parca's REST gateway path: the same message as JSON.
        .route("/profiles/writeraw", rpc::unary(parca::write_raw))
        .route(
            "/parca.query.v1alpha1.QueryService/Query",
            rpc::unary(parca::query::query),
        )
        .route(
            "/parca.query.v1alpha1.QueryService/QueryRange",
            rpc::unary(parca::query::query_range),
        )
        .route(
            "/parca.query.v1alpha1.QueryService/ProfileTypes",
            rpc::unary(parca::query::profile_types),
        )
        .route(
            "/parca.query.v1alpha1.QueryService/Labels",
            rpc::unary(parca::query::labels),
        )
        .route(
            "/parca.query.v1alpha1.QueryService/Values",
            rpc::unary(parca::query::values),
        )
        .route(
            "/querier.v1.QuerierService/ProfileTypes",
            rpc::unary(querier::profile_types),
        )
        .route(
            "/querier.v1.QuerierService/LabelNames",
            rpc::unary(querier::label_names),
        )
        .route(
            "/querier.v1.QuerierService/LabelValues",
            rpc::unary(querier::label_values),
        )
        .route(
            "/querier.v1.QuerierService/Series",
            rpc::unary(querier::series),
        )
        .route(
            "/querier.v1.QuerierService/SelectMergeStacktraces",
            rpc::unary(querier::select_merge_stacktraces),
        )
        .route(
            "/querier.v1.QuerierService/SelectMergeSpanProfile",
            rpc::unary(querier::select_merge_span_profile),
        )
        .route(
            "/querier.v1.QuerierService/SelectMergeProfile",
            rpc::unary(querier::select_merge_profile),
        )
        .route(
            "/querier.v1.QuerierService/SelectSeries",
            rpc::unary(querier::select_series),
        )
        .route("/querier.v1.QuerierService/Diff", rpc::unary(querier::diff))
        .route(
            "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
            rpc::unary(otlp::export),
        )
        .route(otlp::HTTP_PATH, post(otlp::http_export))
        .route("/ingest", post(ingest::ingest))
        .route("/pyroscope/ingest", post(ingest::ingest))
        .route("/pyroscope/render", get(legacy::render))
        .route("/pyroscope/render-diff", get(legacy::render_diff))
        .route("/pyroscope/labels", get(legacy::labels))
        .route("/pyroscope/label-values", get(legacy::label_values))
        .route("/api/v1/merge", get(query::merge))
        .route("/api/v1/series", get(query::series))
        .route("/api/v1/labels", get(query::label_names))
        .route("/api/v1/labels/{name}/values", get(query::label_values))
        .route("/api/v1/profile-types", get(query::profile_types))
        .route("/api/v1/diff", get(query::diff))
        .route("/api/v1/sql", post(query::sql))
        .route("/api/v1/cluster", get(cluster::status))
        .route(
            "/api/v1/cluster/nodes/{id}",
            axum::routing::delete(cluster::remove_node),
        )
        .route(
            "/api/v1/admin/tenants",
            get(admin::list_tenants).post(admin::create_tenant),
        )
        .route(
            "/api/v1/admin/tenants/{id}",
            get(admin::get_tenant).delete(admin::revoke_tenant),
        )
        .route(
            "/api/v1/admin/tenants/{id}/tokens",
            get(admin::list_tokens).post(admin::create_token),
        )
        .route(
            "/api/v1/admin/tokens/{token}",
            axum::routing::delete(admin::revoke_token),
        )
        .route(
            "/api/v1/admin/limits",
            get(admin::get_defaults).put(admin::put_defaults),
        )
        .route(
            "/api/v1/admin/tenants/{id}/limits",
            get(admin::get_limits).put(admin::put_limits),
        )
        .route("/api/v1/admin/usage", get(admin::usage))
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(ui::index))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/style.css", get(ui::style))
        .route("/ui/config.json", get(ui::config))
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
    let status = response
        .extensions()
        .get::<OutcomeStatus>()
        .map_or(response.status(), |s| s.0);
    state
        .metrics
        .record_request(&route, status.as_u16(), started.elapsed());
    response
}

/// Finds the caller of every request and admits it to what it asks for (see
/// [`crate::tenancy::auth`]); a refusal takes the shape of the request's protocol.
pub async fn authorize(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use crate::tenancy::auth::{Surface, admit};
    use axum::response::IntoResponse;
    let path = request.uri().path().to_owned();
    let surface = Surface::of(&path);
    if state.cluster.draining.is_cancelled()
        && !matches!(surface, Surface::Internal | Surface::Open)
    {
        // Stopping: clients go to another node; peers still reach this one for the handover.
        let e = Error::ShuttingDown;
        return if Surface::is_rpc(&path) {
            rpc::error_for(request.headers(), e)
        } else if path == otlp::HTTP_PATH {
            otlp::error_for(request.headers(), e)
        } else {
            e.into_response()
        };
    }
    let meta = state.cluster.state();
    let admitted = state
        .cluster
        .tenancy
        .auth
        .caller(surface, request.headers(), &meta)
        .and_then(|caller| {
            admit(&caller, surface, request.headers_mut())?;
            Ok(caller)
        });
    match admitted {
        Ok(caller) => {
            if surface == Surface::Write {
                hold_for_rate(&state, &meta, request.headers()).await;
            }
            if surface == Surface::Read
                && let Ok(tenant) = tenant(request.headers())
            {
                // One query per request, however many the engine runs for it.
                let tenancy = &state.cluster.tenancy;
                tenancy
                    .usage
                    .record(&tenant, tenancy.now(), |c| c.queries += 1);
            }
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) if Surface::is_rpc(&path) => rpc::error_for(request.headers(), e),
        Err(e) if path == otlp::HTTP_PATH => otlp::error_for(request.headers(), e),
        Err(e) => e.into_response(),
    }
}

/// Holds a write whose tenant's bucket cannot take it yet, before its body is read (see
/// [`crate::tenancy::rate::RateLimiter::hold`]).
async fn hold_for_rate(
    state: &AppState,
    meta: &crate::cluster::meta::MetaState,
    headers: &HeaderMap,
) {
    let length = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (Some(length), Ok(tenant)) = (length, tenant(headers)) else {
        return;
    };
    let limits = meta.tenancy.limits(tenant.as_str());
    let rate = crate::tenancy::rate::Rate {
        bytes_per_sec: limits.ingestion_rate_bytes,
        burst: limits.ingestion_burst_bytes,
        nodes: meta.active_count(),
    };
    let tenancy = &state.cluster.tenancy;
    if let Some(wait) = tenancy.rates.hold(&tenant, length, rate, tenancy.now()) {
        tokio::time::sleep(wait).await;
    }
}

/// `GET /ready`: 200 once the node is in a formed cluster and every shard it holds has a
/// leader; 503 until then.
async fn ready(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> (axum::http::StatusCode, &'static str) {
    if state.cluster.ready() {
        (axum::http::StatusCode::OK, "ready\n")
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> String {
    let cluster = &state.cluster;
    let mut gauges = Gauges {
        log_bytes: cluster.meta.log_bytes(),
        groups: vec![(crate::ids::GroupId::Meta, cluster.meta.status())],
        ..Default::default()
    };
    for replica in cluster.replicas() {
        let manifest = replica.store.manifest();
        gauges.buffer_bytes += replica.store.buffer_bytes() as u64;
        gauges.buffer_samples += replica.store.buffer_samples() as u64;
        gauges.log_bytes += replica.raft.log_bytes();
        gauges.blocks += manifest.blocks.len() as u64;
        gauges.block_puts += replica.store.block_puts();
        gauges.blocks_summed += replica.engine.blocks_answered_by_sums();
        gauges.groups.push((
            crate::ids::GroupId::Shard(replica.id),
            replica.raft.status(),
        ));
    }
    let mut out = state.metrics.render(&gauges);
    crate::tenancy::metering::render_all(cluster, &mut out);
    out
}

/// A request body with `Content-Encoding: gzip` honoured, bounded by `max_bytes` decompressed.
pub fn content_decoded(
    headers: &HeaderMap,
    body: axum::body::Bytes,
    max_bytes: usize,
) -> Result<axum::body::Bytes> {
    let gzip = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(body);
    }
    gunzip(&body, max_bytes)
}

/// Decompresses gzip (all members), refusing output past `max_bytes`.
pub fn gunzip(body: &[u8], max_bytes: usize) -> Result<axum::body::Bytes> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
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

/// Runs CPU work (shaping a merged profile, encoding) on the blocking pool, off the I/O
/// runtime, and waits for it.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("a blocking task failed: {e}")))?
}

/// The request's `Idempotency-Key`, scoped to its tenant: a client that retries a write with
/// the same key is answered as the first time, and the write counts once.
pub fn idempotency_key(headers: &HeaderMap, tenant: &TenantId) -> Result<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.as_bytes();
    if key.is_empty() || key.len() > crate::raft::MAX_KEY_BYTES {
        return Err(Error::BadRequest(format!(
            "Idempotency-Key is {} bytes; it must be 1 to {} bytes",
            key.len(),
            crate::raft::MAX_KEY_BYTES
        )));
    }
    if !key.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(Error::BadRequest(
            "Idempotency-Key must be printable ASCII without spaces".into(),
        ));
    }
    let key = String::from_utf8_lossy(key);
    Ok(Some(format!("{}/{key}", tenant.as_str())))
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
