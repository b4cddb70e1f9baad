//! Firn's own query API (`/api/v1/`): JSON in query parameters, answers in the format asked.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use firn_query::{FlameGraph, ProfileQuery};
use serde::Deserialize;

use crate::api::{AppState, tenant};
use crate::error::{Error, Result};
use crate::time::{now, parse_time};

#[derive(Debug, Deserialize)]
pub struct MergeParams {
    /// A selector: profile type ID and matchers, `process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="api"}`.
    query: String,
    /// Defaults to an hour ago.
    from: Option<String>,
    /// Defaults to now.
    until: Option<String>,
    /// `folded` (default), `top`, `pprof` (gzipped) or `flamegraph` (JSON).
    format: Option<String>,
    /// Flame graph nodes at most (default 1024).
    max_nodes: Option<usize>,
}

/// `GET /api/v1/merge`: the selection merged into one profile.
pub async fn merge(
    State(state): State<AppState>,
    Query(params): Query<MergeParams>,
    headers: HeaderMap,
) -> Result<Response> {
    let tenant = tenant(&headers)?;
    let current = now();
    let time = |text: &Option<String>, default, what: &str| match text {
        Some(t) => parse_time(t, current).map_err(|e| Error::BadRequest(format!("{what}: {e}"))),
        None => Ok(default),
    };
    let from = time(
        &params.from,
        firn_storage::Nanos(current.0 - 3_600_000_000_000),
        "from",
    )?;
    let until = time(&params.until, current, "until")?;
    let query = ProfileQuery::new(
        &params.query,
        from,
        firn_storage::Nanos(until.0.saturating_add(1)),
    )?;
    let merged = state.engine.merge(&tenant, &query).await?;
    Ok(match params.format.as_deref().unwrap_or("folded") {
        "folded" => merged.folded().into_response(),
        "top" => axum::Json(merged.top()).into_response(),
        "flamegraph" => axum::Json(FlameGraph::from_merged(
            &merged,
            params.max_nodes.unwrap_or(1024),
        ))
        .into_response(),
        "pprof" => {
            let bytes = firn_storage::pprof::encode_gzip(&merged.to_pprof());
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        other => {
            return Err(Error::BadRequest(format!(
                "format {other:?} is not one of folded, top, pprof, flamegraph"
            )));
        }
    })
}

#[derive(Debug, Deserialize)]
pub struct SqlParams {
    /// `json` (default: `{"columns": [...], "rows": [[...], ...]}`, cells as text) or `text`
    /// (a table people read).
    format: Option<String>,
}

/// `POST /api/v1/sql`: read-only SQL over the tenant's `samples` table (and `stacks`), the
/// statement as the request body.
pub async fn sql(
    State(state): State<AppState>,
    Query(params): Query<SqlParams>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response> {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let tenant = tenant(&headers)?;
    let statement = std::str::from_utf8(&body)
        .map_err(|_| Error::BadRequest("the SQL statement is not valid UTF-8".into()))?;
    let batches = state.engine.sql(&tenant, statement).await?;
    match params.format.as_deref().unwrap_or("json") {
        "text" => {
            let table = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .map_err(|e| Error::Internal(format!("formatting SQL results failed: {e}")))?;
            Ok(format!("{table}\n").into_response())
        }
        "json" => {
            let columns: Vec<String> = batches
                .first()
                .map(|b| {
                    b.schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect()
                })
                .unwrap_or_default();
            let options = FormatOptions::default().with_null("null");
            let mut rows: Vec<Vec<String>> = Vec::new();
            for batch in &batches {
                let formatters = batch
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::Internal(format!("formatting SQL results failed: {e}")))?;
                for row in 0..batch.num_rows() {
                    rows.push(
                        formatters
                            .iter()
                            .map(|f| f.value(row).to_string())
                            .collect(),
                    );
                }
            }
            Ok(axum::Json(serde_json::json!({ "columns": columns, "rows": rows })).into_response())
        }
        other => Err(Error::BadRequest(format!(
            "format {other:?} is not one of json, text"
        ))),
    }
}
