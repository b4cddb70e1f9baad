//! The reports of Parca's `Query`: a merged profile (or a diff of two) as gzipped pprof, a
//! top table, or a flame graph, inline or in table form (functions named through
//! `string_table`, `function` and `locations`, 1-based indices, as Parca's UI reads them).

use std::collections::HashMap;
use std::io::Write;

use firn_query::{FlameGraph, FlameNode, MergedProfile};
use firn_storage::ProfileType;
use prost::Message;

use super::messages::{
    Flamegraph, FlamegraphNode, FlamegraphNodeMeta, FlamegraphRootNode, Function, Line, Location,
    QueryResponse, ReportType, Top, TopNode, TopNodeMeta,
};
use crate::error::{Error, Result};

/// Flame graph nodes a report holds at most; the rest is folded into `other` nodes.
const MAX_FLAME_NODES: usize = 65_536;

pub fn report_of(
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
        filtered: total.saturating_sub(merged.total()),
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
pub fn diff_report(
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
        filtered: total.saturating_sub(b.total()),
        ..Default::default()
    };
    match report {
        ReportType::PPROF => {
            // pprof's own diff form (`-diff_base`): b's samples and a's negated, one profile.
            let mut combined = b;
            for &(stack, value) in &a.stacks {
                let copied = combined.symbols.copy_stack_from(&a.symbols, stack);
                let scaled = ((value as f64 * scale).round() as i64).saturating_neg();
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

/// Keeps the stacks with a frame whose name contains `text`, ignoring case (Parca's
/// `filter_query`).
fn retain_containing(merged: &mut MergedProfile, text: &str) {
    let text = text.to_lowercase();
    let symbols = &merged.symbols;
    merged.stacks.retain(|&(s, _)| {
        symbols
            .frame_names(s)
            .any(|f| f.to_lowercase().contains(&text))
    });
}

fn unit(profile_type: Option<&ProfileType>) -> String {
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
                e.cumulative
                    .saturating_sub(before.get(&e.function).copied().unwrap_or(0))
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
    // Parca counts the root as a level.
    out.height = builder.height.saturating_add(1);
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
                (
                    b,
                    b.saturating_sub((node.total as f64 * scale).round() as i64),
                )
            }
            (None, _) => (node.total, 0),
        }
    }

    fn children(&mut self, node: &FlameNode, depth: i32) -> Vec<FlamegraphNode> {
        let mut out = Vec::with_capacity(node.children.len());
        for child in &node.children {
            let (cumulative, diff) = self.values(child);
            if cumulative < self.threshold && cumulative.abs().max(diff.abs()) < self.threshold {
                self.trimmed = self.trimmed.saturating_add(cumulative);
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
        assert_eq!((f.total, f.trimmed, f.height), (10, 1, 3));
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
}
