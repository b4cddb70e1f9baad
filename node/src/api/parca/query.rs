//! `parca.query.v1alpha1.QueryService`, what Parca's UI and CLI clients call: `Query` (modes
//! single, merge and diff; reports pprof, top, flame graph and flame graph table),
//! `QueryRange`, `ProfileTypes`, `Labels` and `Values`, each served over gRPC, gRPC-Web and
//! Connect by [`crate::api::rpc`].
//!
//! Queries are Parca selectors, `name:sample_type:sample_unit:period_type:period_unit[:delta]{...}`:
//! five parts select profiles without a duration, six delta profiles, as in Parca. Times are
//! `google.protobuf.Timestamp`s, `end` inclusive. A diff is `b - a`, with `a` scaled to `b`'s
//! total unless `absolute` is set. Reports Firn cannot make (call graphs, Arrow records,
//! source, grouping by labels, frame filters) are refused with `unimplemented`, naming the field.

use firn_query::{Aggregation, MergedProfile, SeriesOptions};
use firn_storage::Nanos;

use super::messages::{
    DiffMode, LabelsRequest, LabelsResponse, MergeProfile, MetricsSample, MetricsSeries,
    ProfileDiffSelection, ProfileType, ProfileTypesRequest, ProfileTypesResponse, QueryMode,
    QueryRangeRequest, QueryRangeResponse, QueryRequest, QueryResponse, ReportType, SingleProfile,
    ValueType, ValuesRequest, ValuesResponse,
};
use super::report::{diff_report, report_of};
use super::{Label, LabelSet};
use crate::api::blocking;
use crate::api::protobuf::{Duration, Timestamp};
use crate::api::querier::{MAX_LABEL_NAMES, MAX_POINTS, check_label_name, check_label_names};
use crate::api::rpc::Call;
use crate::api::rpc::json::ProtoEnum;
use crate::api::selection::{self, Selection, TimeRange};
use crate::error::{Error, Result};
use crate::time::now;

/// Points a `QueryRange` series has when the request names no step.
const DEFAULT_POINTS: i64 = 300;
/// What "recent" means when a metadata request names no time range.
const RECENT: Nanos = Nanos(3_600_000_000_000);

pub async fn profile_types(
    call: Call,
    request: ProfileTypesRequest,
) -> Result<ProfileTypesResponse> {
    let range = optional_range(request.start, request.end)?;
    let kinds = call
        .state
        .query
        .profile_kinds(&call.tenant, range.start, range.end)
        .await?;
    Ok(ProfileTypesResponse {
        types: kinds
            .into_iter()
            .map(|(t, delta)| ProfileType {
                name: t.name,
                sample_type: t.sample_type,
                sample_unit: t.sample_unit,
                period_type: t.period_type,
                period_unit: t.period_unit,
                delta,
            })
            .collect(),
    })
}

pub async fn labels(call: Call, request: LabelsRequest) -> Result<LabelsResponse> {
    let range = optional_range(request.start, request.end)?;
    let selections = matches(&request.r#match, request.profile_type.as_deref())?;
    let names = selection::label_names(&call.state.query, &call.tenant, &selections, range).await?;
    Ok(LabelsResponse {
        // The private labels a profile type implies are Pyroscope's, not Parca's.
        label_names: names.into_iter().filter(|n| !n.starts_with("__")).collect(),
        warnings: Vec::new(),
    })
}

pub async fn values(call: Call, request: ValuesRequest) -> Result<ValuesResponse> {
    check_label_name(&request.label_name, "label_name")?;
    let range = optional_range(request.start, request.end)?;
    let selections = matches(&request.r#match, request.profile_type.as_deref())?;
    let values = selection::label_values(
        &call.state.query,
        &call.tenant,
        &selections,
        &request.label_name,
        range,
        &firn_query::ValuePage::ALL,
    )
    .await?;
    Ok(ValuesResponse {
        label_values: values,
        warnings: Vec::new(),
    })
}

pub async fn query_range(call: Call, request: QueryRangeRequest) -> Result<QueryRangeResponse> {
    let (selection, profile_type) = Selection::parca(&request.query, "query")?;
    let delta = selection.delta() == Some(true);
    let range = required_range(request.start, request.end, "")?;
    let step = step(request.step, range)?;
    check_label_names(&request.sum_by, "sum_by")?;
    let Some(query) = selection.query(None, range) else {
        return Ok(QueryRangeResponse::default());
    };
    let group_by = if request.sum_by.is_empty() {
        // Parca answers one series per label set: group by every label the selection has.
        let names =
            selection::label_names(&call.state.query, &call.tenant, &[selection], range).await?;
        let names: Vec<String> = names.into_iter().filter(|n| !n.starts_with("__")).collect();
        if names.len() > MAX_LABEL_NAMES {
            return Err(Error::BadRequest(format!(
                "the selection has {} label names, more than the {MAX_LABEL_NAMES} a query may group by; name the labels in sum_by",
                names.len()
            )));
        }
        names
    } else {
        request.sum_by
    };
    let options = SeriesOptions {
        step,
        group_by,
        // Delta profiles add up over a step; snapshots (heap) do not: their average is what
        // a step holds.
        aggregation: if delta {
            Aggregation::Sum
        } else {
            Aggregation::Average
        },
        limit: (request.limit > 0).then_some(request.limit as usize),
    };
    let series = call
        .state
        .query
        .series(&call.tenant, &query, &options)
        .await?;
    let step_seconds = step.0 as f64 / 1e9;
    Ok(QueryRangeResponse {
        series: series
            .into_iter()
            .map(|s| MetricsSeries {
                labelset: Some(LabelSet {
                    labels: s
                        .labels
                        .into_iter()
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(name, value)| Label { name, value })
                        .collect(),
                }),
                samples: s
                    .points
                    .iter()
                    .zip(&s.profiles)
                    .map(|(&(t, value), &profiles)| MetricsSample {
                        timestamp: Some(Timestamp::from_nanos(t)),
                        value: value as i64,
                        value_per_second: value / step_seconds,
                        duration: step.0,
                        count: i32::try_from(profiles).unwrap_or(i32::MAX),
                    })
                    .collect(),
                period_type: Some(ValueType {
                    r#type: profile_type.period_type.clone(),
                    unit: profile_type.period_unit.clone(),
                }),
                sample_type: Some(ValueType {
                    r#type: profile_type.sample_type.clone(),
                    unit: profile_type.sample_unit.clone(),
                }),
            })
            .collect(),
    })
}

pub async fn query(call: Call, request: QueryRequest) -> Result<QueryResponse> {
    check_unserved(&request)?;
    let report = request.report_type;
    let mut trim = match request.node_trim_threshold {
        None => 0.0,
        Some(t) if (0.0..=100.0).contains(&t) => f64::from(t),
        Some(t) => {
            return Err(Error::BadRequest(format!(
                "node_trim_threshold is {t}; it is a percentage between 0 and 100"
            )));
        }
    };
    if report == ReportType::PPROF || report == ReportType::TOP {
        trim = 0.0;
    }
    let filter = request.filter_query.clone().filter(|q| !q.is_empty());
    match request.mode {
        QueryMode::DIFF => {
            only_option(&request, "diff")?;
            let diff = request.diff.expect("checked");
            let (a, b) = futures::try_join!(
                side(&call, diff.a.as_ref(), "diff.a"),
                side(&call, diff.b.as_ref(), "diff.b")
            )?;
            let absolute = diff.absolute.unwrap_or(false);
            blocking(move || diff_report(a, b, absolute, report, trim, filter.as_deref())).await
        }
        QueryMode::MERGE | QueryMode::SINGLE => {
            let merged = if request.mode == QueryMode::MERGE {
                only_option(&request, "merge")?;
                merge(&call, request.merge.as_ref().expect("checked"), "merge").await?
            } else {
                only_option(&request, "single")?;
                single(&call, request.single.as_ref().expect("checked"), "single").await?
            };
            blocking(move || report_of(merged, report, trim, filter.as_deref())).await
        }
        mode => Err(Error::BadRequest(format!(
            "mode {mode} is not a {}",
            QueryMode::NAME
        ))),
    }
}

/// Refuses what Firn does not serve, naming the field, instead of answering something else.
fn check_unserved(request: &QueryRequest) -> Result<()> {
    let unserved = [
        (
            request
                .group_by
                .as_ref()
                .is_some_and(|g| !g.fields.is_empty()),
            "group_by",
        ),
        (request.source_reference.is_some(), "source_reference"),
        (request.runtime_filter.is_some(), "runtime_filter"),
        (!request.filter.is_empty(), "filter"),
        (request.invert_call_stack == Some(true), "invert_call_stack"),
        (
            request
                .sandwich_by_function
                .as_ref()
                .is_some_and(|f| !f.is_empty()),
            "sandwich_by_function",
        ),
    ];
    if let Some((_, field)) = unserved.iter().find(|(set, _)| *set) {
        return Err(Error::Unimplemented(format!("{field} is not supported")));
    }
    let served = [
        ReportType::FLAMEGRAPH_UNSPECIFIED,
        ReportType::PPROF,
        ReportType::TOP,
        ReportType::FLAMEGRAPH_TABLE,
    ];
    if !served.contains(&request.report_type) {
        let name = ReportType::VALUES
            .iter()
            .find(|(n, _)| *n == request.report_type)
            .map(|(_, name)| *name);
        return Err(match name {
            Some(name) => Error::Unimplemented(format!(
                "report_type {name} is not served; ask for REPORT_TYPE_PPROF, REPORT_TYPE_TOP or REPORT_TYPE_FLAMEGRAPH_TABLE"
            )),
            None => Error::BadRequest(format!(
                "report_type {} is not a {}",
                request.report_type,
                ReportType::NAME
            )),
        });
    }
    Ok(())
}

/// Checks that the option the mode reads is the one set.
fn only_option(request: &QueryRequest, wanted: &str) -> Result<()> {
    let set = [
        ("diff", request.diff.is_some()),
        ("merge", request.merge.is_some()),
        ("single", request.single.is_some()),
    ];
    for (name, present) in set {
        if name == wanted && !present {
            return Err(Error::BadRequest(format!(
                "{wanted} is required by the request's mode"
            )));
        }
        if name != wanted && present {
            return Err(Error::BadRequest(format!(
                "{name} is set, but the request's mode reads {wanted}; set one"
            )));
        }
    }
    Ok(())
}

async fn side(
    call: &Call,
    selection: Option<&ProfileDiffSelection>,
    field: &str,
) -> Result<MergedProfile> {
    let s = selection.ok_or_else(|| Error::BadRequest(format!("{field} is required")))?;
    if s.merge.is_some() && s.single.is_some() {
        return Err(Error::BadRequest(format!(
            "{field} sets both merge and single; set the one its mode reads"
        )));
    }
    match s.mode {
        DiffMode::MERGE => {
            let m = s
                .merge
                .as_ref()
                .ok_or_else(|| Error::BadRequest(format!("{field}.merge is required")))?;
            merge(call, m, &format!("{field}.merge")).await
        }
        DiffMode::SINGLE => {
            let p = s
                .single
                .as_ref()
                .ok_or_else(|| Error::BadRequest(format!("{field}.single is required")))?;
            single(call, p, &format!("{field}.single")).await
        }
        mode => Err(Error::BadRequest(format!(
            "{field}.mode {mode} is not a {}",
            DiffMode::NAME
        ))),
    }
}

async fn merge(call: &Call, m: &MergeProfile, field: &str) -> Result<MergedProfile> {
    let (selection, _) = Selection::parca(&m.query, &format!("{field}.query"))?;
    let range = required_range(m.start, m.end, &format!("{field}."))?;
    selection::merge(&call.state.query, &call.tenant, &selection, range).await
}

/// The profile at `time`: Parca's timestamps have millisecond precision.
async fn single(call: &Call, p: &SingleProfile, field: &str) -> Result<MergedProfile> {
    let (selection, _) = Selection::parca(&p.query, &format!("{field}.query"))?;
    let time = p
        .time
        .ok_or_else(|| Error::BadRequest(format!("{field}.time is required")))?
        .to_nanos(&format!("{field}.time"))?;
    let range = TimeRange {
        start: time,
        end: Nanos(time.0.saturating_add(1_000_000)),
    };
    selection::merge(&call.state.query, &call.tenant, &selection, range).await
}

/// `match` selectors, each of `profile_type` when one is named.
fn matches(texts: &[String], profile_type: Option<&str>) -> Result<Vec<Selection>> {
    if texts.len() > selection::MAX_SELECTORS {
        return Err(Error::BadRequest(format!(
            "match has {} selectors, the limit is {}",
            texts.len(),
            selection::MAX_SELECTORS
        )));
    }
    let mut selections = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Selection::parca_match(t, &format!("match[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    if selections.is_empty() {
        selections.push(Selection::default());
    }
    let Some(text) = profile_type.filter(|t| !t.is_empty()) else {
        return Ok(selections);
    };
    let (typed, _) = Selection::parca(text, "profile_type")?;
    selections
        .into_iter()
        .map(|s| s.with_type_of(&typed, "profile_type"))
        .collect()
}

/// `[start, end]` of a query, both required.
fn required_range(
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    prefix: &str,
) -> Result<TimeRange> {
    let start = start
        .ok_or_else(|| Error::BadRequest(format!("{prefix}start is required")))?
        .to_nanos(&format!("{prefix}start"))?;
    let end = end
        .ok_or_else(|| Error::BadRequest(format!("{prefix}end is required")))?
        .to_nanos(&format!("{prefix}end"))?;
    checked_range(start, end, prefix)
}

/// `[start, end]` of a metadata request: the last hour when absent, `end` now.
fn optional_range(start: Option<Timestamp>, end: Option<Timestamp>) -> Result<TimeRange> {
    let current = now();
    let end = match end {
        Some(t) => t.to_nanos("end")?,
        None => current,
    };
    let start = match start {
        Some(t) => t.to_nanos("start")?,
        None => end.saturating_sub(RECENT),
    };
    checked_range(start, end, "")
}

fn checked_range(start: Nanos, end: Nanos, prefix: &str) -> Result<TimeRange> {
    if start > end {
        return Err(Error::BadRequest(format!(
            "{prefix}start ({}) is after {prefix}end ({})",
            crate::time::format_rfc3339(start.0.div_euclid(1_000_000_000), 0),
            crate::time::format_rfc3339(end.0.div_euclid(1_000_000_000), 0),
        )));
    }
    Ok(TimeRange {
        start,
        end: Nanos(end.0.saturating_add(1)),
    })
}

/// A `QueryRange` step: positive, at most [`MAX_POINTS`] points; by default the range over
/// [`DEFAULT_POINTS`], at least a second.
fn step(step: Option<Duration>, range: TimeRange) -> Result<Nanos> {
    let step = match step {
        None => Nanos((range.len().0 / DEFAULT_POINTS).max(1_000_000_000)),
        Some(d) => d.to_nanos("step")?,
    };
    if step.0 < 1_000_000 {
        return Err(Error::BadRequest(format!(
            "step is {} ns; it must be at least 1ms",
            step.0
        )));
    }
    let points = range.len().0 / step.0;
    if points > MAX_POINTS {
        return Err(Error::BadRequest(format!(
            "step of {} ms over {} ms gives {points} points, the limit is {MAX_POINTS}; use a larger step",
            step.as_millis(),
            range.len().as_millis()
        )));
    }
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_bounded() {
        let day = TimeRange {
            start: Nanos(0),
            end: Nanos(86_400_000_000_000),
        };
        assert_eq!(step(None, day).expect("default"), Nanos(288_000_000_000));
        let e = step(Some(Duration::from_nanos(Nanos(1_000_000))), day).expect_err("too many");
        assert!(e.to_string().contains("the limit is 11000"), "{e}");
        let e = step(Some(Duration::from_nanos(Nanos(0))), day).expect_err("zero");
        assert!(e.to_string().contains("at least 1ms"), "{e}");
    }
}
