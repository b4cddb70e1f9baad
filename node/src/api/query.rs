//! Firn's own query API (`/api/v1/`): parameters in the query string, JSON answers (or text
//! where people read it). Times are anything [`crate::time::parse_time`] reads (Unix time in
//! s/ms/µs/ns, RFC 3339, `now-1h`), `until` inclusive, the last hour by default; selectors are
//! `type{label="value"}`. A bad parameter is a 400 whose message names it.

use std::collections::BTreeMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use firn_query::{Aggregation, FlameGraph, MergedProfile, SeriesOptions};
use firn_storage::Nanos;
use serde::Deserialize;
use serde_json::json;

use crate::api::querier::{MAX_NODES, check_label_names};
use crate::api::selection::{self, Selection, TimeRange};
use crate::api::{AppState, blocking, tenant};
use crate::error::{Error, Result};
use crate::time::parse_duration;

/// Flame graph nodes when a request names no `max_nodes`.
const DEFAULT_MAX_NODES: usize = 1024;
/// The shortest default series step (Pyroscope's).
const MIN_DEFAULT_STEP: Nanos = Nanos(15_000_000_000);
/// Points per series at most.
const MAX_POINTS: i64 = crate::api::querier::MAX_POINTS;

/// Query-string parameters, or a 400 naming the one that did not parse.
pub(crate) fn params<T>(query: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    query
        .map(|Query(p)| p)
        .map_err(|e| Error::BadRequest(e.body_text()))
}

/// The `from`/`until` range of a request (an hour up to now by default).
pub(crate) fn time_range(from: Option<&str>, until: Option<&str>) -> Result<TimeRange> {
    TimeRange::from_params(from, until, ("from", "until"))
}

pub(crate) fn selection(query: Option<&str>, name: &str, required: bool) -> Result<Selection> {
    match query {
        Some(q) => Selection::parse(q, name),
        None if required => Err(Error::BadRequest(format!(
            "query parameter `{name}` is required: a selector such as process_cpu:cpu:nanoseconds:cpu:nanoseconds{{service_name=\"api\"}}"
        ))),
        None => Ok(Selection::default()),
    }
}

/// `sum` (the default) or `avg` over the profiles in a step.
pub(crate) fn aggregation(text: Option<&str>) -> Result<Aggregation> {
    match text {
        None | Some("sum") => Ok(Aggregation::Sum),
        Some("avg" | "average") => Ok(Aggregation::Average),
        Some(other) => Err(Error::BadRequest(format!(
            "aggregation {other:?} is not one of sum, avg"
        ))),
    }
}

/// The selection and range of a label query: an optional selector, `from` and `until`.
pub(crate) fn label_scope(
    query: Option<&str>,
    from: Option<&str>,
    until: Option<&str>,
) -> Result<(Vec<Selection>, TimeRange)> {
    Ok((
        vec![selection(query, "query", false)?],
        time_range(from, until)?,
    ))
}

pub(crate) fn max_nodes(value: Option<usize>) -> Result<usize> {
    match value {
        None | Some(0) => Ok(DEFAULT_MAX_NODES),
        Some(n) if n as i64 <= MAX_NODES => Ok(n),
        Some(n) => Err(Error::BadRequest(format!(
            "max_nodes is {n}; the limit is {MAX_NODES}"
        ))),
    }
}

#[derive(Debug, Deserialize)]
pub struct MergeParams {
    /// A selector: profile type ID and matchers, `process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="api"}`.
    query: Option<String>,
    /// Defaults to an hour ago.
    from: Option<String>,
    /// Defaults to now.
    until: Option<String>,
    /// `folded` (default), `top`, `pprof` (gzipped) or `flamegraph` (JSON).
    format: Option<String>,
    /// Flame graph nodes at most (default 1024).
    max_nodes: Option<usize>,
    /// Trace to profile: only the samples carrying these ids (comma-separated).
    trace_id: Option<String>,
    span_id: Option<String>,
    profile_id: Option<String>,
}

/// The samples a request's `trace_id`, `span_id` and `profile_id` parameters pick (all when
/// none is given): what a distributed trace links to.
fn links(
    trace_id: &Option<String>,
    span_id: &Option<String>,
    profile_id: &Option<String>,
) -> Result<firn_query::LinkSelector> {
    let split = |v: &Option<String>| -> Vec<String> {
        v.as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (t, s, p) = (split(trace_id), split(span_id), split(profile_id));
    selection::link_selector([("trace_id", &t), ("span_id", &s), ("profile_id", &p)])
}

/// `GET /api/v1/merge`: the selection merged into one profile.
pub async fn merge(
    State(state): State<AppState>,
    query: std::result::Result<Query<MergeParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let params = params(query)?;
    let tenant = tenant(&headers)?;
    let selection = selection(params.query.as_deref(), "query", true)?.with_links(links(
        &params.trace_id,
        &params.span_id,
        &params.profile_id,
    )?);
    let range = time_range(params.from.as_deref(), params.until.as_deref())?;
    let max_nodes = max_nodes(params.max_nodes)?;
    let format = params.format.unwrap_or_else(|| "folded".into());
    if !["folded", "top", "flamegraph", "pprof"].contains(&format.as_str()) {
        return Err(Error::BadRequest(format!(
            "format {format:?} is not one of folded, top, pprof, flamegraph"
        )));
    }
    let merged = selection::merge(&state.query, &tenant, &selection, range).await?;
    blocking(move || {
        Ok(match format.as_str() {
            "top" => axum::Json(merged.top()).into_response(),
            "flamegraph" => axum::Json(FlameGraph::from_merged(&merged, max_nodes)).into_response(),
            "pprof" => {
                let bytes = firn_storage::pprof::encode_gzip(&merged.to_pprof());
                ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
            }
            _ => merged.folded().into_response(),
        })
    })
    .await
}

#[derive(Debug, Deserialize)]
pub struct SeriesParams {
    query: Option<String>,
    from: Option<String>,
    until: Option<String>,
    /// A duration (`15s`, `1m`) or seconds; by default about a thousand points, at least 15 s.
    step: Option<String>,
    /// Label names, comma-separated.
    group_by: Option<String>,
    /// `sum` (default) or `avg`, over the profiles in a step.
    aggregation: Option<String>,
    /// Keep the series with the largest totals.
    limit: Option<usize>,
    /// Trace to profile, as in `merge`.
    trace_id: Option<String>,
    span_id: Option<String>,
    profile_id: Option<String>,
}

/// `GET /api/v1/series`: values per step, one series per value of the `group_by` labels.
/// Answers `{"series": [{"labels": {...}, "points": [[unix ms, value], ...]}]}`, each point at
/// the start of its step.
pub async fn series(
    State(state): State<AppState>,
    query: std::result::Result<Query<SeriesParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let params = params(query)?;
    let tenant = tenant(&headers)?;
    let selection = selection(params.query.as_deref(), "query", true)?.with_links(links(
        &params.trace_id,
        &params.span_id,
        &params.profile_id,
    )?);
    let range = time_range(params.from.as_deref(), params.until.as_deref())?;
    let step = match params.step.as_deref() {
        Some(text) => parse_duration(text).map_err(|e| Error::BadRequest(format!("step: {e}")))?,
        None => Nanos((range.len().0 / 1000).max(MIN_DEFAULT_STEP.0)),
    };
    if step.0 < 1_000_000 {
        return Err(Error::BadRequest(format!(
            "step is {} ns; it must be at least 1ms",
            step.0
        )));
    }
    if range.len().0 / step.0 > MAX_POINTS {
        return Err(Error::BadRequest(format!(
            "step of {} ms over {} ms gives {} points, the limit is {MAX_POINTS}; use a larger step",
            step.as_millis(),
            range.len().as_millis(),
            range.len().0 / step.0
        )));
    }
    let group_by: Vec<String> = params
        .group_by
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    check_label_names(&group_by, "group_by")?;
    let aggregation = aggregation(params.aggregation.as_deref())?;
    let Some(query) = selection.query(None, range) else {
        return Ok(axum::Json(json!({ "series": [] })).into_response());
    };
    let options = SeriesOptions {
        step,
        group_by,
        aggregation,
        limit: params.limit.filter(|&l| l > 0),
    };
    let series = state.query.series(&tenant, &query, &options).await?;
    let series: Vec<serde_json::Value> = series
        .into_iter()
        .map(|s| {
            let labels: BTreeMap<String, String> = s.labels.into_iter().collect();
            let points: Vec<(i64, f64)> = s
                .points
                .into_iter()
                .map(|(t, v)| (t.as_millis(), v))
                .collect();
            json!({ "labels": labels, "points": points })
        })
        .collect();
    Ok(axum::Json(json!({ "series": series })).into_response())
}

#[derive(Debug, Deserialize)]
pub struct LabelParams {
    /// Optional selector narrowing the rows; every row by default.
    query: Option<String>,
    from: Option<String>,
    until: Option<String>,
}

impl LabelParams {
    fn selection_and_range(&self) -> Result<(Vec<Selection>, TimeRange)> {
        label_scope(
            self.query.as_deref(),
            self.from.as_deref(),
            self.until.as_deref(),
        )
    }
}

/// `GET /api/v1/labels/{name}/values` takes the label scope and a page.
#[derive(Debug, Deserialize)]
pub struct LabelValueParams {
    query: Option<String>,
    from: Option<String>,
    until: Option<String>,
    /// Values per page: 1 to [`MAX_VALUES_PAGE`], [`DEFAULT_VALUES_PAGE`] by default.
    limit: Option<usize>,
    /// The previous page's `next_cursor`: this page starts after it.
    cursor: Option<String>,
    /// Only values starting with it.
    prefix: Option<String>,
}

/// A label's values come a page at a time: a label with a million values is never sent
/// (or gathered) whole.
const DEFAULT_VALUES_PAGE: usize = 1000;
const MAX_VALUES_PAGE: usize = 10_000;
/// Label values are at most this long (a longer cursor cannot be one of ours).
const MAX_CURSOR_BYTES: usize = 64 * 1024;
/// A value prefix (typed text to complete) is at most this long.
const MAX_PREFIX_BYTES: usize = 4096;

impl LabelValueParams {
    fn page(&self) -> Result<firn_query::ValuePage> {
        let limit = match self.limit {
            None => DEFAULT_VALUES_PAGE,
            Some(n) if (1..=MAX_VALUES_PAGE).contains(&n) => n,
            Some(n) => {
                return Err(Error::BadRequest(format!(
                    "limit is {n}; it must be from 1 to {MAX_VALUES_PAGE} values per page"
                )));
            }
        };
        if let Some(prefix) = &self.prefix
            && prefix.len() > MAX_PREFIX_BYTES
        {
            return Err(Error::BadRequest(format!(
                "prefix is {} bytes; it may be at most {MAX_PREFIX_BYTES}",
                prefix.len()
            )));
        }
        Ok(firn_query::ValuePage {
            after: self.cursor.as_deref().map(decode_cursor).transpose()?,
            limit: Some(limit),
            prefix: self.prefix.clone().filter(|p| !p.is_empty()),
        })
    }
}

/// A cursor is the last value of its page, hex-encoded (a value may hold any character).
fn encode_cursor(value: &str) -> String {
    value.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(cursor: &str) -> Result<String> {
    let bad = || {
        Error::BadRequest(format!(
            "cursor {cursor:?} is not a next_cursor this API returned"
        ))
    };
    if !cursor.len().is_multiple_of(2) || cursor.len() > 2 * MAX_CURSOR_BYTES {
        return Err(bad());
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| {
            cursor
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(bad)
        })
        .collect::<Result<Vec<u8>>>()?;
    String::from_utf8(bytes).map_err(|_| bad())
}

/// `GET /api/v1/labels`: `{"names": [...]}`, the label names on selected rows, with the
/// names the profile type implies (`__name__`, `__profile_type__`, ...).
pub async fn label_names(
    State(state): State<AppState>,
    query: std::result::Result<Query<LabelParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let params = params(query)?;
    let tenant = tenant(&headers)?;
    let (selections, range) = params.selection_and_range()?;
    let names = selection::label_names(&state.query, &tenant, &selections, range).await?;
    Ok(axum::Json(json!({ "names": names })).into_response())
}

/// `GET /api/v1/labels/{name}/values`: `{"name": ..., "values": [...]}`, sorted.
/// `GET /api/v1/labels/{name}/values`: a page of the label's values, sorted, and the cursor
/// of the next page when there may be more.
pub async fn label_values(
    State(state): State<AppState>,
    name: std::result::Result<Path<String>, PathRejection>,
    query: std::result::Result<Query<LabelValueParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let Path(name) = name.map_err(|e| Error::BadRequest(e.body_text()))?;
    let params = params(query)?;
    let tenant = tenant(&headers)?;
    if !firn_storage::labels::is_valid_name(&name) || name.len() > 1024 {
        return Err(Error::BadRequest(format!(
            "label name {name:?} (in the path) is not a valid label name"
        )));
    }
    let page = params.page()?;
    let (selections, range) = label_scope(
        params.query.as_deref(),
        params.from.as_deref(),
        params.until.as_deref(),
    )?;
    let values =
        selection::label_values(&state.query, &tenant, &selections, &name, range, &page).await?;
    // A full page may have a successor; a short one is the last.
    let next = (Some(values.len()) == page.limit)
        .then(|| values.last().map(|v| encode_cursor(v)))
        .flatten();
    Ok(axum::Json(json!({ "name": name, "values": values, "next_cursor": next })).into_response())
}

#[derive(Debug, Deserialize)]
pub struct RangeParams {
    from: Option<String>,
    until: Option<String>,
}

/// `GET /api/v1/profile-types`: `{"profile_types": [{"id", "name", "sample_type",
/// "sample_unit", "period_type", "period_unit"}]}` with data in the range.
pub async fn profile_types(
    State(state): State<AppState>,
    query: std::result::Result<Query<RangeParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let params = params(query)?;
    let tenant = tenant(&headers)?;
    let range = time_range(params.from.as_deref(), params.until.as_deref())?;
    let types = state
        .query
        .profile_types(&tenant, range.start, range.end)
        .await?;
    let types: Vec<serde_json::Value> = types
        .iter()
        .map(|t| {
            json!({
                "id": t.id(),
                "name": t.name,
                "sample_type": t.sample_type,
                "sample_unit": t.sample_unit,
                "period_type": t.period_type,
                "period_unit": t.period_unit,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "profile_types": types })).into_response())
}

#[derive(Debug, Deserialize)]
pub struct DiffParams {
    /// The selector of both sides, unless a side names its own.
    query: Option<String>,
    from: Option<String>,
    until: Option<String>,
    left_query: Option<String>,
    left_from: Option<String>,
    left_until: Option<String>,
    right_query: Option<String>,
    right_from: Option<String>,
    right_until: Option<String>,
    /// `flamegraph` (default, JSON, `right` holding the right side's total and self) or
    /// `folded` (`stack left right` per line).
    format: Option<String>,
    max_nodes: Option<usize>,
}

/// `GET /api/v1/diff`: two selections (left, right) of one profile type, compared.
pub async fn diff(
    State(state): State<AppState>,
    query: std::result::Result<Query<DiffParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let p = params(query)?;
    let tenant = tenant(&headers)?;
    let side = |q: &Option<String>, from: &Option<String>, until: &Option<String>, name: &str| {
        let (query_name, from_name, until_name) = (
            format!("{name}_query"),
            format!("{name}_from"),
            format!("{name}_until"),
        );
        let text = q.as_deref().or(p.query.as_deref()).ok_or_else(|| {
            Error::BadRequest(format!(
                "query parameter `{query_name}` (or `query`, for both sides) is required"
            ))
        })?;
        let selection = Selection::parse(text, &query_name)?;
        let range = TimeRange::from_params(
            from.as_deref().or(p.from.as_deref()),
            until.as_deref().or(p.until.as_deref()),
            (&from_name, &until_name),
        )?;
        Ok::<_, Error>((selection, range))
    };
    let (left, left_range) = side(&p.left_query, &p.left_from, &p.left_until, "left")?;
    let (right, right_range) = side(&p.right_query, &p.right_from, &p.right_until, "right")?;
    if left.profile_type() != right.profile_type() {
        let name = |s: &Selection| s.profile_type().map_or("none".to_owned(), |t| t.id());
        return Err(Error::BadRequest(format!(
            "left_query selects profile type {} and right_query {}; a diff compares one profile type",
            name(&left),
            name(&right)
        )));
    }
    let max_nodes = max_nodes(p.max_nodes)?;
    let format = p.format.unwrap_or_else(|| "flamegraph".into());
    if format != "flamegraph" && format != "folded" {
        return Err(Error::BadRequest(format!(
            "format {format:?} is not one of flamegraph, folded"
        )));
    }
    let (l, r) = futures::try_join!(
        selection::merge(&state.query, &tenant, &left, left_range),
        selection::merge(&state.query, &tenant, &right, right_range),
    )?;
    blocking(move || {
        Ok(if format == "folded" {
            folded_diff(&l, &r).into_response()
        } else {
            axum::Json(FlameGraph::diff(&l, &r, max_nodes)).into_response()
        })
    })
    .await
}

/// `root;...;leaf left right` per distinct frame path, sorted, zero where a side lacks it
/// (the input of Brendan Gregg's `difffolded.pl` output, for `flamegraph.pl`).
fn folded_diff(left: &MergedProfile, right: &MergedProfile) -> String {
    let mut paths: BTreeMap<String, [i64; 2]> = BTreeMap::new();
    for (side, profile) in [left, right].into_iter().enumerate() {
        for &(stack, value) in &profile.stacks {
            let sum = &mut paths
                .entry(profile.frames_root_first(stack).join(";"))
                .or_default()[side];
            *sum = sum.saturating_add(value);
        }
    }
    paths
        .into_iter()
        .map(|(path, [l, r])| format!("{path} {l} {r}\n"))
        .collect()
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
    query: std::result::Result<Query<SqlParams>, QueryRejection>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response> {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let params = params(query)?;
    let tenant = tenant(&headers)?;
    let statement = std::str::from_utf8(&body)
        .map_err(|_| Error::BadRequest("the SQL statement is not valid UTF-8".into()))?;
    let batches = state.query.sql(&tenant, statement).await?;
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
            Ok(axum::Json(json!({ "columns": columns, "rows": rows })).into_response())
        }
        other => Err(Error::BadRequest(format!(
            "format {other:?} is not one of json, text"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_any_value_and_refuses_what_it_did_not_make() {
        for value in [
            "",
            "p-01",
            "a \"quoted\" value",
            "é/ü;{}",
            "x".repeat(1000).as_str(),
        ] {
            assert_eq!(decode_cursor(&encode_cursor(value)).expect("ours"), value);
        }
        for bad in ["z", "zz", "0", "ff", &"00".repeat(MAX_CURSOR_BYTES + 1)] {
            let e = decode_cursor(bad).expect_err("not ours");
            assert!(e.to_string().contains("cursor"), "{e}");
        }
    }
}
