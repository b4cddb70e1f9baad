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

use std::collections::HashMap;
use std::io::Write;

use firn_query::{Aggregation, FlameGraph, FlameNode, MergedProfile, SeriesOptions};
use firn_storage::{Nanos, ProfileType as EngineType};
use prost::Message;

use super::messages::{
    DiffMode, Flamegraph, FlamegraphNode, FlamegraphNodeMeta, FlamegraphRootNode, Function,
    LabelsRequest, LabelsResponse, Line, Location, MergeProfile, MetricsSample, MetricsSeries,
    ProfileDiffSelection, ProfileType, ProfileTypesRequest, ProfileTypesResponse, QueryMode,
    QueryRangeRequest, QueryRangeResponse, QueryRequest, QueryResponse, ReportType, SingleProfile,
    Top, TopNode, TopNodeMeta, ValueType, ValuesRequest, ValuesResponse,
};
use super::{Label, LabelSet};
use crate::api::blocking;
use crate::api::protobuf::{Duration, Timestamp};
use crate::api::querier::{MAX_LABEL_NAMES, MAX_POINTS, check_label_name, check_label_names};
use crate::api::rpc::Call;
use crate::api::rpc::json::ProtoEnum;
use crate::api::selection::{self, Selection, TimeRange};
use crate::error::{Error, Result};
use crate::time::now;

/// Flame graph nodes a report holds at most; the rest is folded into `other` nodes.
const MAX_FLAME_NODES: usize = 65_536;
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
    )
    .await?;
    Ok(ValuesResponse {
        label_values: values,
        warnings: Vec::new(),
    })
}

pub async fn query_range(call: Call, request: QueryRangeRequest) -> Result<QueryRangeResponse> {
    let selection = Selection::parca(&request.query, "query")?;
    let range = required_range(request.start, request.end, "")?;
    let step = step(request.step, range)?;
    check_label_names(&request.sum_by, "sum_by")?;
    let Some(profile_type) = selection.profile_type().cloned() else {
        unreachable!("a Parca selection names its profile type");
    };
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
        aggregation: Aggregation::Sum,
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
    let selection = Selection::parca(&m.query, &format!("{field}.query"))?;
    let range = required_range(m.start, m.end, &format!("{field}."))?;
    selection::merge(&call.state.query, &call.tenant, &selection, range).await
}

/// The profile at `time`: Parca's timestamps have millisecond precision.
async fn single(call: &Call, p: &SingleProfile, field: &str) -> Result<MergedProfile> {
    let selection = Selection::parca(&p.query, &format!("{field}.query"))?;
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

fn report_of(
    mut merged: MergedProfile,
    report: i32,
    trim: f64,
    filter: Option<&str>,
) -> Result<QueryResponse> {
    let total = merged.total();
    if let Some(f) = filter {
        retain_containing(&mut merged, f);
    }
    let unit = unit(merged.profile_type.as_ref());
    let mut response = QueryResponse {
        total,
        filtered: merged.total(),
        ..Default::default()
    };
    match report {
        ReportType::PPROF => response.pprof = Some(gzipped_pprof(&merged)?),
        ReportType::TOP => response.top = Some(top(&merged, None, unit)),
        table => {
            let graph = FlameGraph::from_merged(&merged, MAX_FLAME_NODES);
            response.flamegraph = Some(flamegraph(
                &graph,
                None,
                unit,
                trim,
                table == ReportType::FLAMEGRAPH_TABLE,
            ));
        }
    }
    Ok(response)
}

/// `b - a`: `b`'s values with the change from `a` (scaled to `b`'s total unless `absolute`).
fn diff_report(
    mut a: MergedProfile,
    mut b: MergedProfile,
    absolute: bool,
    report: i32,
    trim: f64,
    filter: Option<&str>,
) -> Result<QueryResponse> {
    if let (Some(ta), Some(tb)) = (&a.profile_type, &b.profile_type)
        && ta != tb
    {
        return Err(Error::BadRequest(format!(
            "diff.a selects {ta} and diff.b {tb}; a diff compares one profile type"
        )));
    }
    let total = b.total();
    if let Some(f) = filter {
        retain_containing(&mut a, f);
        retain_containing(&mut b, f);
    }
    let scale = if absolute || a.total() == 0 {
        1.0
    } else {
        b.total() as f64 / a.total() as f64
    };
    let unit = unit(b.profile_type.as_ref());
    let mut response = QueryResponse {
        total,
        filtered: b.total(),
        ..Default::default()
    };
    match report {
        ReportType::PPROF => {
            // pprof's own diff form (`-diff_base`): b's samples and a's negated, one profile.
            let mut combined = b;
            for &(stack, value) in &a.stacks {
                let copied = combined.symbols.copy_stack_from(&a.symbols, stack);
                let scaled = -((value as f64 * scale).round() as i64);
                combined.stacks.push((copied, scaled));
            }
            response.pprof = Some(gzipped_pprof(&combined)?);
        }
        ReportType::TOP => response.top = Some(top(&b, Some((&a, scale)), unit)),
        table => {
            let graph = FlameGraph::diff(&a, &b, MAX_FLAME_NODES);
            response.flamegraph = Some(flamegraph(
                &graph,
                Some(scale),
                unit,
                trim,
                table == ReportType::FLAMEGRAPH_TABLE,
            ));
        }
    }
    Ok(response)
}

/// Keeps the stacks with a frame whose name contains `text` (Parca's `filter_query`).
fn retain_containing(merged: &mut MergedProfile, text: &str) {
    let symbols = &merged.symbols;
    merged
        .stacks
        .retain(|&(s, _)| symbols.frame_names(s).any(|f| f.contains(text)));
}

fn unit(profile_type: Option<&EngineType>) -> String {
    profile_type
        .map(|t| t.sample_unit.clone())
        .unwrap_or_default()
}

fn gzipped_pprof(merged: &MergedProfile) -> Result<bytes::Bytes> {
    let raw = merged.to_pprof().encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw)
        .and_then(|()| gz.finish())
        .map(bytes::Bytes::from)
        .map_err(|e| Error::Internal(format!("gzip: {e}")))
}

/// Functions by flat value; with a base, `diff` is the change of the cumulative value.
fn top(merged: &MergedProfile, base: Option<(&MergedProfile, f64)>, unit: String) -> Top {
    let before: HashMap<String, i64> = base
        .map(|(a, scale)| {
            a.top()
                .into_iter()
                .map(|e| (e.function, (e.cumulative as f64 * scale).round() as i64))
                .collect()
        })
        .unwrap_or_default();
    let list: Vec<TopNode> = merged
        .top()
        .into_iter()
        .map(|e| TopNode {
            diff: if base.is_some() {
                e.cumulative - before.get(&e.function).copied().unwrap_or(0)
            } else {
                0
            },
            meta: Some(TopNodeMeta {
                function: Some(Function {
                    name: e.function,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            cumulative: e.cumulative,
            flat: e.flat,
        })
        .collect();
    let n = i32::try_from(list.len()).unwrap_or(i32::MAX);
    Top {
        list,
        reported: n,
        total: n,
        unit,
    }
}

/// A flame graph in Parca's form. In a diff (`scale` set) the graph's left values are `a`,
/// the right ones `b`: a node's cumulative value is `b`'s and its diff `b - a·scale`. The
/// table form names functions through `function`, `locations` and `string_table`.
fn flamegraph(
    graph: &FlameGraph,
    scale: Option<f64>,
    unit: String,
    trim_percent: f64,
    table: bool,
) -> Flamegraph {
    let mut builder = Builder {
        scale,
        table,
        threshold: 0,
        trimmed: 0,
        height: 0,
        strings: vec![String::new()],
        functions: HashMap::new(),
        out: Flamegraph::default(),
    };
    let (cumulative, diff) = builder.values(&graph.root);
    builder.threshold = (cumulative as f64 * trim_percent / 100.0) as i64;
    let children = builder.children(&graph.root, 1);
    let mut out = builder.out;
    out.root = Some(FlamegraphRootNode {
        cumulative,
        diff,
        children,
    });
    out.total = cumulative;
    out.untrimmed_total = cumulative;
    out.unit = unit;
    out.height = builder.height;
    out.trimmed = builder.trimmed;
    if table {
        out.string_table = builder.strings;
    }
    out
}

struct Builder {
    scale: Option<f64>,
    table: bool,
    threshold: i64,
    trimmed: i64,
    height: i32,
    strings: Vec<String>,
    /// Function name → 1-based index into `out.function` (and `out.locations`).
    functions: HashMap<String, u32>,
    out: Flamegraph,
}

impl Builder {
    /// A node's cumulative value and diff.
    fn values(&self, node: &FlameNode) -> (i64, i64) {
        match (self.scale, node.right) {
            (Some(scale), right) => {
                let b = right.map_or(0, |(total, _)| total);
                (b, b - (node.total as f64 * scale).round() as i64)
            }
            (None, _) => (node.total, 0),
        }
    }

    fn children(&mut self, node: &FlameNode, depth: i32) -> Vec<FlamegraphNode> {
        let mut out = Vec::with_capacity(node.children.len());
        for child in &node.children {
            let (cumulative, diff) = self.values(child);
            if cumulative < self.threshold && cumulative.abs().max(diff.abs()) < self.threshold {
                self.trimmed += cumulative;
                continue;
            }
            self.height = self.height.max(depth);
            let meta = self.meta(&child.name);
            let children = self.children(child, depth + 1);
            out.push(FlamegraphNode {
                meta: Some(meta),
                cumulative,
                diff,
                children,
            });
        }
        out
    }

    fn meta(&mut self, name: &str) -> FlamegraphNodeMeta {
        if !self.table {
            return FlamegraphNodeMeta {
                function: Some(Function {
                    name: name.to_owned(),
                    ..Default::default()
                }),
                line: Some(Line::default()),
                ..Default::default()
            };
        }
        let index = match self.functions.get(name) {
            Some(&i) => i,
            None => {
                let string = self.strings.len() as u32;
                self.strings.push(name.to_owned());
                self.out.function.push(Function {
                    name_string_index: string,
                    ..Default::default()
                });
                let i = self.out.function.len() as u32;
                self.out.locations.push(Location {
                    lines: vec![Line {
                        function_index: i,
                        ..Default::default()
                    }],
                    ..Default::default()
                });
                self.functions.insert(name.to_owned(), i);
                i
            }
        };
        FlamegraphNodeMeta {
            location_index: index,
            line_index: 0,
            ..Default::default()
        }
    }
}

/// `match` selectors, each of `profile_type` when one is named.
fn matches(texts: &[String], profile_type: Option<&str>) -> Result<Vec<Selection>> {
    let selections = Selection::parse_all(texts, "match")?;
    let Some(text) = profile_type.filter(|t| !t.is_empty()) else {
        return Ok(selections);
    };
    let typed = Selection::parca(text, "profile_type")?;
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

    fn node(name: &str, total: i64, right: Option<i64>, children: Vec<FlameNode>) -> FlameNode {
        FlameNode {
            name: name.into(),
            total,
            self_value: 0,
            right: right.map(|r| (r, 0)),
            children,
        }
    }

    #[test]
    fn a_table_flamegraph_names_functions_through_its_tables() {
        let graph = FlameGraph {
            root: node(
                "total",
                10,
                None,
                vec![node(
                    "main",
                    10,
                    None,
                    vec![node("work", 9, None, vec![]), node("tiny", 1, None, vec![])],
                )],
            ),
            nodes: 4,
        };
        let f = flamegraph(&graph, None, "nanoseconds".into(), 20.0, true);
        assert_eq!(f.string_table, ["", "main", "work"]);
        assert_eq!((f.total, f.trimmed, f.height), (10, 1, 2));
        let main = &f.root.as_ref().expect("root").children[0];
        let index = main.meta.as_ref().expect("meta").location_index as usize;
        let line = &f.locations[index - 1].lines[0];
        let function = &f.function[line.function_index as usize - 1];
        assert_eq!(f.string_table[function.name_string_index as usize], "main");
        assert_eq!(main.children.len(), 1, "tiny (10 %) is trimmed at 20 %");
    }

    #[test]
    fn a_diff_is_b_minus_scaled_a() {
        let graph = FlameGraph {
            root: node(
                "total",
                10,
                Some(20),
                vec![node("grew", 5, Some(16), vec![])],
            ),
            nodes: 2,
        };
        let f = flamegraph(&graph, Some(2.0), String::new(), 0.0, false);
        let root = f.root.expect("root");
        assert_eq!((root.cumulative, root.diff), (20, 0));
        assert_eq!(
            (root.children[0].cumulative, root.children[0].diff),
            (16, 6)
        );
        let meta = root.children[0].meta.as_ref().expect("meta");
        assert_eq!(meta.function.as_ref().expect("inline").name, "grew");
    }

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
