//! `querier.v1.QuerierService`, what Grafana's Pyroscope data source, the Profiles Drilldown
//! app and profilecli call: `ProfileTypes`, `LabelNames`, `LabelValues`, `Series`,
//! `SelectMergeStacktraces` (flame graph, tree or pprof), `SelectMergeProfile`,
//! `SelectSeries` and `Diff`, each served over Connect and gRPC by [`crate::api::rpc`].
//!
//! Times are Unix milliseconds, ranges inclusive, as in Pyroscope. Every field is checked
//! before the engine runs, and an error names the field: `left.start (5 ms) is after
//! left.end (1 ms)`. Selections Firn cannot make (Go PGO truncation, DOT output) are refused
//! with `unimplemented` rather than ignored. Trace, span and profile id selectors pick the
//! samples that carry those ids (trace to profile); `SelectMergeSpanProfile` is the span
//! selector's older form.
//!
//! `SelectSeries` labels each point with the start of its step, as Firn's engine does;
//! Pyroscope labels a step by its end.

pub mod convert;
pub mod messages;

use firn_query::{Aggregation, FlameGraph, MergedProfile, SeriesOptions};
use firn_storage::Nanos;

use crate::api::blocking;
use crate::api::google;
use crate::api::rpc::Call;
use crate::api::selection::{self, Selection, TimeRange};
use crate::api::types::{
    LabelNamesRequest, LabelNamesResponse, LabelPair, LabelValuesRequest, LabelValuesResponse,
    Labels, StackTraceSelector, TimeSeriesAggregationType,
};
use crate::error::{Error, Result};
use messages::{
    DiffRequest, DiffResponse, PprofProfile, ProfileFormat, ProfileTypesRequest,
    ProfileTypesResponse, SelectMergeProfileRequest, SelectMergeSpanProfileRequest,
    SelectMergeSpanProfileResponse, SelectMergeStacktracesRequest, SelectMergeStacktracesResponse,
    SelectSeriesRequest, SelectSeriesResponse, SeriesRequest, SeriesResponse,
};

/// Flame graph nodes when a request names no `max_nodes` (Pyroscope's default).
pub const DEFAULT_MAX_NODES: i64 = 8192;
/// The most flame graph nodes a request may ask for (Pyroscope's limit).
pub const MAX_NODES: i64 = 1 << 20;
/// Label names one request may list (`label_names`, `group_by`).
pub const MAX_LABEL_NAMES: usize = 64;
/// Points one series may have.
pub const MAX_POINTS: i64 = 11_000;

pub async fn profile_types(
    call: Call,
    request: ProfileTypesRequest,
) -> Result<ProfileTypesResponse> {
    let range = TimeRange::from_millis_or_recent(request.start, request.end, "")?;
    let types = call
        .state
        .query
        .profile_types(&call.tenant, range.start, range.end)
        .await?;
    Ok(ProfileTypesResponse {
        profile_types: types.iter().map(convert::profile_type).collect(),
    })
}

pub async fn label_names(call: Call, request: LabelNamesRequest) -> Result<LabelNamesResponse> {
    let range = TimeRange::from_millis_or_recent(request.start, request.end, "")?;
    let selections = Selection::parse_all(&request.matchers, "matchers")?;
    let names = selection::label_names(&call.state.query, &call.tenant, &selections, range).await?;
    Ok(LabelNamesResponse { names })
}

pub async fn label_values(call: Call, request: LabelValuesRequest) -> Result<LabelValuesResponse> {
    check_label_name(&request.name, "name")?;
    let range = TimeRange::from_millis_or_recent(request.start, request.end, "")?;
    let selections = Selection::parse_all(&request.matchers, "matchers")?;
    let names = selection::label_values(
        &call.state.query,
        &call.tenant,
        &selections,
        &request.name,
        range,
        &firn_query::ValuePage::ALL,
    )
    .await?;
    Ok(LabelValuesResponse { names })
}

pub async fn series(call: Call, request: SeriesRequest) -> Result<SeriesResponse> {
    let range = TimeRange::from_millis_or_recent(request.start, request.end, "")?;
    let selections = Selection::parse_all(&request.matchers, "matchers")?;
    check_label_names(&request.label_names, "label_names")?;
    let sets = selection::series_labels(
        &call.state.query,
        &call.tenant,
        &selections,
        &request.label_names,
        range,
    )
    .await?;
    Ok(SeriesResponse {
        labels_set: sets
            .into_iter()
            .map(|set| Labels {
                labels: set
                    .into_iter()
                    .map(|(name, value)| LabelPair { name, value })
                    .collect(),
            })
            .collect(),
    })
}

pub async fn select_merge_stacktraces(
    call: Call,
    request: SelectMergeStacktracesRequest,
) -> Result<SelectMergeStacktracesResponse> {
    let format = ProfileFormat::try_from(request.format).map_err(|_| {
        Error::BadRequest(format!(
            "format {} is not a querier.v1.ProfileFormat",
            request.format
        ))
    })?;
    if format == ProfileFormat::Dot {
        return Err(Error::Unimplemented(
            "format PROFILE_FORMAT_DOT is not served; use FLAMEGRAPH, TREE or PPROF".into(),
        ));
    }
    let (merged, max_nodes) = merge(&call, &MergeSpec::from(&request), "").await?;
    blocking(move || {
        let mut response = SelectMergeStacktracesResponse::default();
        match format {
            ProfileFormat::Pprof => {
                response.pprof = Some(PprofProfile {
                    profile: Some(google::Profile::from(merged.to_pprof())),
                });
            }
            ProfileFormat::Tree => {
                response.tree = convert::tree(&FlameGraph::from_merged(&merged, max_nodes)).into();
            }
            _ => {
                response.flamegraph = Some(convert::flamegraph(&FlameGraph::from_merged(
                    &merged, max_nodes,
                )));
            }
        }
        Ok(response)
    })
    .await
}

/// `SelectMergeSpanProfile`: `SelectMergeStacktraces` of the samples of some spans.
pub async fn select_merge_span_profile(
    call: Call,
    request: SelectMergeSpanProfileRequest,
) -> Result<SelectMergeSpanProfileResponse> {
    if request.format == ProfileFormat::Pprof as i32 {
        return Err(Error::BadRequest(
            "format PROFILE_FORMAT_PPROF is not a SelectMergeSpanProfile format; use FLAMEGRAPH or TREE".into(),
        ));
    }
    let response = select_merge_stacktraces(
        call,
        SelectMergeStacktracesRequest {
            profile_type_id: request.profile_type_id,
            label_selector: request.label_selector,
            start: request.start,
            end: request.end,
            max_nodes: request.max_nodes,
            format: request.format,
            span_selector: request.span_selector,
            ..Default::default()
        },
    )
    .await?;
    Ok(SelectMergeSpanProfileResponse {
        flamegraph: response.flamegraph,
        tree: response.tree,
    })
}

pub async fn select_merge_profile(
    call: Call,
    request: SelectMergeProfileRequest,
) -> Result<google::Profile> {
    let (merged, _) = merge(&call, &MergeSpec::from(&request), "").await?;
    blocking(move || Ok(google::Profile::from(merged.to_pprof()))).await
}

pub async fn select_series(
    call: Call,
    request: SelectSeriesRequest,
) -> Result<SelectSeriesResponse> {
    let selection = Selection::with_type(&request.profile_type_id, &request.label_selector, "")?;
    let range = TimeRange::from_millis(request.start, request.end, "")?;
    let step = step(request.step, range)?;
    check_label_names(&request.group_by, "group_by")?;
    let aggregation = match request.aggregation.map(TimeSeriesAggregationType::try_from) {
        None | Some(Ok(TimeSeriesAggregationType::Sum)) => Aggregation::Sum,
        Some(Ok(TimeSeriesAggregationType::Average)) => Aggregation::Average,
        Some(Err(_)) => {
            return Err(Error::BadRequest(format!(
                "aggregation {:?} is not a types.v1.TimeSeriesAggregationType",
                request.aggregation
            )));
        }
    };
    check_stack_trace_selector(request.stack_trace_selector.as_ref(), "", false)?;
    let limit = match request.limit {
        Some(n) if n < 0 => {
            return Err(Error::BadRequest(format!(
                "limit is {n}; it must not be negative"
            )));
        }
        Some(0) | None => None,
        Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
    };
    let Some(query) = selection.query(None, range) else {
        return Ok(SelectSeriesResponse::default());
    };
    let options = SeriesOptions {
        step,
        group_by: request.group_by,
        aggregation,
        limit,
    };
    let series = call
        .state
        .query
        .series(&call.tenant, &query, &options)
        .await?;
    Ok(SelectSeriesResponse {
        series: series.into_iter().map(convert::series).collect(),
    })
}

pub async fn diff(call: Call, request: DiffRequest) -> Result<DiffResponse> {
    let left = request
        .left
        .ok_or_else(|| Error::BadRequest("left is required".into()))?;
    let right = request
        .right
        .ok_or_else(|| Error::BadRequest("right is required".into()))?;
    if left.profile_type_id != right.profile_type_id {
        return Err(Error::BadRequest(format!(
            "left.profile_typeID {:?} and right.profile_typeID {:?} differ; a diff compares one profile type",
            left.profile_type_id, right.profile_type_id
        )));
    }
    let (left_spec, right_spec) = (MergeSpec::from(&left), MergeSpec::from(&right));
    let ((l, max_nodes), (r, _)) = futures::try_join!(
        merge(&call, &left_spec, "left."),
        merge(&call, &right_spec, "right.")
    )?;
    blocking(move || {
        Ok(DiffResponse {
            flamegraph: Some(convert::flamegraph_diff(&FlameGraph::diff(
                &l, &r, max_nodes,
            ))),
        })
    })
    .await
}

/// The fields that select a merge, shared by the merge requests.
struct MergeSpec<'a> {
    profile_type_id: &'a str,
    label_selector: &'a str,
    start: i64,
    end: i64,
    max_nodes: Option<i64>,
    stack_trace_selector: Option<&'a StackTraceSelector>,
    id_selectors: [(&'static str, &'a [String]); 3],
}

/// `From<&request> for MergeSpec`: the two merge requests are distinct messages with the same
/// selection fields (the profile request has no `span_selector`), so one macro reads them.
macro_rules! merge_spec_from {
    ($request:ty, |$r:ident| span_selector: $span_selector:expr) => {
        impl<'a> From<&'a $request> for MergeSpec<'a> {
            fn from($r: &'a $request) -> Self {
                Self {
                    profile_type_id: &$r.profile_type_id,
                    label_selector: &$r.label_selector,
                    start: $r.start,
                    end: $r.end,
                    max_nodes: $r.max_nodes,
                    stack_trace_selector: $r.stack_trace_selector.as_ref(),
                    id_selectors: [
                        ("trace_id_selector", &$r.trace_id_selector),
                        ("span_selector", $span_selector),
                        ("profile_id_selector", &$r.profile_id_selector),
                    ],
                }
            }
        }
    };
}

merge_spec_from!(SelectMergeStacktracesRequest, |r| span_selector: &r.span_selector);
merge_spec_from!(SelectMergeProfileRequest, |r| span_selector: &[]);

/// Checks a merge's fields (`prefix` names the message, `left.`) and merges its selection;
/// returns the profile and the flame graph node budget.
async fn merge(call: &Call, spec: &MergeSpec<'_>, prefix: &str) -> Result<(MergedProfile, usize)> {
    let selection = Selection::with_type(spec.profile_type_id, spec.label_selector, prefix)?;
    let range = TimeRange::from_millis(spec.start, spec.end, prefix)?;
    let max_nodes = match spec.max_nodes {
        None | Some(0) => DEFAULT_MAX_NODES,
        Some(n) if (1..=MAX_NODES).contains(&n) => n,
        Some(n) => {
            return Err(Error::BadRequest(format!(
                "{prefix}max_nodes is {n}; it must be between 1 and {MAX_NODES}"
            )));
        }
    };
    let fields = spec
        .id_selectors
        .map(|(field, ids)| (format!("{prefix}{field}"), ids));
    let links = selection::link_selector(fields.each_ref().map(|(f, ids)| (f.as_str(), *ids)))?;
    let selection = selection.with_links(links);
    let call_site = check_stack_trace_selector(spec.stack_trace_selector, prefix, true)?;
    let mut merged = selection::merge(&call.state.query, &call.tenant, &selection, range).await?;
    convert::retain_call_site(&mut merged, &call_site);
    Ok((merged, usize::try_from(max_nodes).unwrap_or(usize::MAX)))
}

/// The call site frames of a stack trace selector (root first), if merges may use them.
fn check_stack_trace_selector(
    selector: Option<&StackTraceSelector>,
    prefix: &str,
    call_site_allowed: bool,
) -> Result<Vec<String>> {
    let Some(selector) = selector else {
        return Ok(Vec::new());
    };
    if selector.go_pgo.is_some() {
        return Err(Error::Unimplemented(format!(
            "{prefix}stack_trace_selector.go_pgo is not supported"
        )));
    }
    if !call_site_allowed && !selector.call_site.is_empty() {
        return Err(Error::Unimplemented(format!(
            "{prefix}stack_trace_selector.call_site is not supported by SelectSeries"
        )));
    }
    if selector.call_site.len()
        > firn_storage::normalize::NormalizeLimits::default().max_stack_depth
    {
        return Err(Error::BadRequest(format!(
            "{prefix}stack_trace_selector.call_site has {} frames, more than any stack",
            selector.call_site.len()
        )));
    }
    Ok(selector.call_site.iter().map(|l| l.name.clone()).collect())
}

/// A `SelectSeries` step: positive seconds, at least a millisecond, at most
/// [`MAX_POINTS`] points over the range.
fn step(seconds: f64, range: TimeRange) -> Result<Nanos> {
    if !seconds.is_finite() || seconds < 0.001 {
        return Err(Error::BadRequest(format!(
            "step is {seconds} s; it must be at least 0.001 s"
        )));
    }
    let nanos = seconds * 1e9;
    if nanos >= i64::MAX as f64 {
        return Err(Error::BadRequest(format!("step is {seconds} s, too long")));
    }
    let step = Nanos(nanos.round() as i64);
    let points = range.len().0 / step.0;
    if points > MAX_POINTS {
        return Err(Error::BadRequest(format!(
            "step of {seconds} s over {} ms gives {points} points, the limit is {MAX_POINTS}; use a larger step",
            range.len().as_millis()
        )));
    }
    Ok(step)
}

pub(crate) fn check_label_name(name: &str, field: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::BadRequest(format!("{field} is required")));
    }
    if !firn_storage::labels::is_valid_name(name) || name.len() > 1024 {
        return Err(Error::BadRequest(format!(
            "{field} {name:?} is not a valid label name"
        )));
    }
    Ok(())
}

/// Checks a list of label names (`field` names it): at most [`MAX_LABEL_NAMES`], each valid.
pub(crate) fn check_label_names(names: &[String], field: &str) -> Result<()> {
    if names.len() > MAX_LABEL_NAMES {
        return Err(Error::BadRequest(format!(
            "{field} has {} names, the limit is {MAX_LABEL_NAMES}",
            names.len()
        )));
    }
    for (i, name) in names.iter().enumerate() {
        check_label_name(name, &format!("{field}[{i}]"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_checked() {
        let hour = TimeRange::from_millis(0, 3_599_999, "").expect("range");
        assert_eq!(step(15.0, hour).expect("15 s"), Nanos(15_000_000_000));
        for (seconds, needle) in [
            (0.0, "at least 0.001 s"),
            (-1.0, "at least 0.001 s"),
            (f64::NAN, "at least 0.001 s"),
            (1e300, "too long"),
            (0.01, "the limit is 11000"),
        ] {
            let e = step(seconds, hour).expect_err("invalid step");
            assert!(e.to_string().contains(needle), "{seconds}: {e}");
        }
    }

    #[test]
    fn label_names_are_checked() {
        assert!(check_label_names(&["service_name".into(), "__name__".into()], "g").is_ok());
        let e = check_label_names(&["ok".into(), "not ok".into()], "group_by").expect_err("bad");
        assert!(e.to_string().contains("group_by[1] \"not ok\""), "{e}");
        let many = vec!["a".to_owned(); MAX_LABEL_NAMES + 1];
        assert!(check_label_names(&many, "label_names").is_err());
        assert!(check_label_name("", "name").is_err());
    }
}
