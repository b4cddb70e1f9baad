//! Pyroscope's legacy HTTP query API (the v1 shape older Grafana plugins, pyroscope-cli and
//! scripts call): flame graphs as "flamebearer" JSON with a timeline, a diff of two
//! selections, labels and label values. Wire facts: `../shared/reference/wire-apis.md` §2.7.
//!
//! ```text
//!  GET /pyroscope/render?query=&from=&until=[&groupBy=][&aggregation=][&max-nodes=]
//!      ─► {"version":1, "flamebearer":{names, levels, numTicks, maxSelf}, "metadata",
//!          "timeline":{startTime, samples, durationDelta}, "groups", "heatmap":null}
//!  GET /pyroscope/render-diff?leftQuery=&leftFrom=&leftUntil=&rightQuery=&rightFrom=&rightUntil=
//!      ─► the same with metadata.format "double", 7-int nodes, leftTicks, rightTicks
//!  GET /pyroscope/label-values?label=[&query=&from=&until=]   ─► ["v1", ...] (__name__: types)
//!  GET /pyroscope/labels[?query=&from=&until=]                ─► ["name", ...]
//! ```

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use firn_query::{FlameGraph, SeriesOptions};
use firn_storage::{Nanos, ProfileType};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::querier::convert;
use crate::api::querier::messages::Level;
use crate::api::querier::{check_label_name, check_label_names};
use crate::api::query::{aggregation, label_scope, max_nodes, params, selection, time_range};
use crate::api::selection::{self as select, Selection, TimeRange};
use crate::api::{AppState, blocking, tenant};
use crate::error::{Error, Result};

/// The shortest timeline step, and the points a timeline aims at (Pyroscope's).
const MIN_STEP_SECS: i64 = 15;
const TIMELINE_POINTS: i64 = 1500;

#[derive(Debug, Deserialize)]
pub struct RenderParams {
    query: Option<String>,
    from: Option<String>,
    until: Option<String>,
    #[serde(rename = "groupBy")]
    group_by: Option<String>,
    aggregation: Option<String>,
    #[serde(rename = "max-nodes", alias = "maxNodes")]
    max_nodes: Option<usize>,
    format: Option<String>,
}

/// Pyroscope's units and sample rate for a profile type: objects for counts, samples (at 1 GHz)
/// for CPU time.
fn metadata(t: Option<&ProfileType>, format: &str) -> Value {
    let (name, unit) = t.map_or(("", ""), |t| {
        (t.sample_type.as_str(), t.sample_unit.as_str())
    });
    let (units, rate) = match name {
        "inuse_objects" | "alloc_objects" | "goroutine" | "samples" => ("objects", 100),
        "cpu" => ("samples", 1_000_000_000),
        _ => (unit, 100),
    };
    json!({"format": format, "spyName": "", "sampleRate": rate, "units": units, "name": name})
}

/// The timeline step: at least 15 s, about 1500 points over the range.
fn step_of(range: &TimeRange) -> Nanos {
    let secs = (range.len().0 / 1_000_000_000 / TIMELINE_POINTS).max(MIN_STEP_SECS);
    Nanos(secs * 1_000_000_000)
}

/// `{startTime, samples, durationDelta, watermarks}`: one sample per step from the range's
/// start snapped down to a step, zero where the series has no point.
fn timeline(points: &[(Nanos, f64)], range: &TimeRange, step: Nanos) -> Value {
    let start = range.start.0.div_euclid(step.0) * step.0;
    let buckets = ((range.end.0 - start).max(0) / step.0 + 1) as usize;
    let mut samples = vec![0u64; buckets];
    for (t, v) in points {
        let i = (t.0 - start).div_euclid(step.0);
        if let Some(s) = usize::try_from(i).ok().and_then(|i| samples.get_mut(i)) {
            *s = s.saturating_add(v.max(0.0).round() as u64);
        }
    }
    json!({
        "startTime": start / 1_000_000_000,
        "samples": samples,
        "durationDelta": step.0 / 1_000_000_000,
        "watermarks": null,
    })
}

/// `{names, levels, numTicks, maxSelf}`: the levels as plain arrays of numbers.
fn flamebearer(names: &[String], levels: &[Level], total: i64, max_self: i64) -> Value {
    let levels: Vec<&Vec<i64>> = levels.iter().map(|l| &l.values).collect();
    json!({"names": names, "levels": levels, "numTicks": total, "maxSelf": max_self})
}

/// `GET /pyroscope/render`.
pub async fn render(
    State(state): State<AppState>,
    query: std::result::Result<Query<RenderParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let params = params(query)?;
    let tenant = tenant(&headers)?;
    if let Some(format) = params.format.as_deref().filter(|f| *f != "json") {
        return Err(Error::Unimplemented(format!(
            "format={format} is not served; /pyroscope/render answers flamebearer JSON"
        )));
    }
    let selection = selection(params.query.as_deref(), "query", true)?;
    let profile_type = selection.profile_type().cloned().ok_or_else(|| {
        Error::BadRequest(
            "query must name a profile type: process_cpu:cpu:nanoseconds:cpu:nanoseconds{...}"
                .into(),
        )
    })?;
    let range = time_range(params.from.as_deref(), params.until.as_deref())?;
    let max_nodes = max_nodes(params.max_nodes)?;
    let aggregation = aggregation(params.aggregation.as_deref())?;
    let group_by: Vec<String> = params
        .group_by
        .iter()
        .map(|g| g.trim().to_owned())
        .filter(|g| !g.is_empty())
        .collect();
    check_label_names(&group_by, "groupBy")?;
    let step = step_of(&range);
    let merged = select::merge(&state.query, &tenant, &selection, range).await?;
    let (timeline_value, groups) = match selection.query(None, range) {
        None => (timeline(&[], &range, step), Value::Null),
        Some(q) => {
            let options = |group_by: Vec<String>| SeriesOptions {
                step,
                group_by,
                aggregation,
                limit: None,
            };
            let total = state
                .query
                .series(&tenant, &q, &options(Vec::new()))
                .await?;
            let points = total.first().map(|s| s.points.as_slice()).unwrap_or(&[]);
            let timeline_value = timeline(points, &range, step);
            let groups = if group_by.is_empty() {
                Value::Null
            } else {
                let series = state.query.series(&tenant, &q, &options(group_by)).await?;
                let mut groups = BTreeMap::new();
                for s in series {
                    let key = s
                        .labels
                        .iter()
                        .map(|(_, v)| v.as_str())
                        .collect::<Vec<_>>()
                        .join(",");
                    groups.insert(key, timeline(&s.points, &range, step));
                }
                json!(groups)
            };
            (timeline_value, groups)
        }
    };
    blocking(move || {
        let fg = convert::flamegraph(&FlameGraph::from_merged(&merged, max_nodes));
        Ok(axum::Json(json!({
            "version": 1,
            "flamebearer": flamebearer(&fg.names, &fg.levels, fg.total, fg.max_self),
            "metadata": metadata(Some(&profile_type), "single"),
            "timeline": timeline_value,
            "groups": groups,
            "heatmap": null,
        }))
        .into_response())
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffParams {
    left_query: Option<String>,
    left_from: Option<String>,
    left_until: Option<String>,
    right_query: Option<String>,
    right_from: Option<String>,
    right_until: Option<String>,
    #[serde(rename = "max-nodes", alias = "maxNodes")]
    max_nodes: Option<usize>,
}

/// `GET /pyroscope/render-diff`.
pub async fn render_diff(
    State(state): State<AppState>,
    query: std::result::Result<Query<DiffParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let params = params(query)?;
    let tenant = tenant(&headers)?;
    let left = selection(params.left_query.as_deref(), "leftQuery", true)?;
    let right = selection(params.right_query.as_deref(), "rightQuery", true)?;
    let profile_type = match (left.profile_type(), right.profile_type()) {
        (Some(l), Some(r)) if l == r => l.clone(),
        (Some(_), Some(_)) => {
            return Err(Error::BadRequest(
                "leftQuery and rightQuery must name the same profile type".into(),
            ));
        }
        _ => {
            return Err(Error::BadRequest(
                "leftQuery and rightQuery must name a profile type".into(),
            ));
        }
    };
    let range = |from: &Option<String>, until: &Option<String>, side: &str| {
        TimeRange::from_params(
            from.as_deref(),
            until.as_deref(),
            if side == "left" {
                ("leftFrom", "leftUntil")
            } else {
                ("rightFrom", "rightUntil")
            },
        )
    };
    let left_range = range(&params.left_from, &params.left_until, "left")?;
    let right_range = range(&params.right_from, &params.right_until, "right")?;
    let max_nodes = max_nodes(params.max_nodes)?;
    let (l, r) = futures::try_join!(
        select::merge(&state.query, &tenant, &left, left_range),
        select::merge(&state.query, &tenant, &right, right_range),
    )?;
    blocking(move || {
        let graph = FlameGraph::diff(&l, &r, max_nodes);
        let fg = convert::flamegraph_diff(&graph);
        Ok(axum::Json(json!({
            "version": 1,
            "flamebearer": flamebearer(&fg.names, &fg.levels, fg.total, fg.max_self),
            "leftTicks": fg.left_ticks,
            "rightTicks": fg.right_ticks,
            "metadata": metadata(Some(&profile_type), "double"),
            "timeline": null,
            "groups": null,
            "heatmap": null,
        }))
        .into_response())
    })
    .await
}

#[derive(Debug, Deserialize)]
pub struct LabelsParams {
    label: Option<String>,
    query: Option<String>,
    from: Option<String>,
    until: Option<String>,
}

impl LabelsParams {
    fn selection_and_range(&self) -> Result<(Vec<Selection>, TimeRange)> {
        label_scope(
            self.query.as_deref(),
            self.from.as_deref(),
            self.until.as_deref(),
        )
    }
}

/// `GET /pyroscope/labels`: the label names on the selected rows.
pub async fn labels(
    State(state): State<AppState>,
    query: std::result::Result<Query<LabelsParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let params = params(query)?;
    let tenant = tenant(&headers)?;
    let (selections, range) = params.selection_and_range()?;
    let names = select::label_names(&state.query, &tenant, &selections, range).await?;
    Ok(axum::Json(names).into_response())
}

/// `GET /pyroscope/label-values?label=`: the label's values; `__name__` lists profile types.
pub async fn label_values(
    State(state): State<AppState>,
    query: std::result::Result<Query<LabelsParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let params = params(query)?;
    let tenant = tenant(&headers)?;
    let name = params
        .label
        .clone()
        .ok_or_else(|| Error::BadRequest("query parameter `label` is required".into()))?;
    let (selections, range) = params.selection_and_range()?;
    if name == "__name__" {
        let types = state
            .query
            .profile_types(&tenant, range.start, range.end)
            .await?;
        let ids: Vec<String> = types.iter().map(ProfileType::id).collect();
        return Ok(axum::Json(ids).into_response());
    }
    check_label_name(&name, "label")?;
    let values = select::label_values(
        &state.query,
        &tenant,
        &selections,
        &name,
        range,
        &firn_query::ValuePage::ALL,
    )
    .await?;
    Ok(axum::Json(values).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn timelines_snap_to_the_step_and_fill_zeros() {
        let range = TimeRange {
            start: Nanos(100 * SEC + 7),
            end: Nanos(160 * SEC),
        };
        let step = step_of(&range);
        assert_eq!(step, Nanos(15 * SEC), "at least 15 s");
        let t = timeline(
            &[(Nanos(120 * SEC), 5.0), (Nanos(150 * SEC), 2.4)],
            &range,
            step,
        );
        assert_eq!(t["startTime"], 90, "snapped down to a multiple of 15 s");
        assert_eq!(t["durationDelta"], 15);
        assert_eq!(t["samples"], json!([0, 0, 5, 0, 2]));
        let day = TimeRange {
            start: Nanos(0),
            end: Nanos(86_400 * SEC),
        };
        assert_eq!(step_of(&day), Nanos(57 * SEC), "about 1500 points");
    }

    #[test]
    fn units_follow_pyroscope() {
        let cpu = ProfileType::parse("process_cpu:cpu:nanoseconds:cpu:nanoseconds").expect("type");
        let m = metadata(Some(&cpu), "single");
        assert_eq!(
            (m["units"].clone(), m["sampleRate"].clone()),
            (json!("samples"), json!(1_000_000_000))
        );
        let objects = ProfileType::parse("memory:inuse_objects:count:space:bytes").expect("type");
        assert_eq!(metadata(Some(&objects), "single")["units"], "objects");
        let bytes = ProfileType::parse("memory:inuse_space:bytes:space:bytes").expect("type");
        assert_eq!(metadata(Some(&bytes), "double")["units"], "bytes");
    }
}
