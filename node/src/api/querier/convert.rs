//! The engine's answers in the querier's wire shapes, converted here and only here: flame
//! graphs as Pyroscope's levels, tree bytes, series points in milliseconds, profile types.
//!
//! A flame graph level lists its nodes left to right as `[x offset, total, self, name index]`.
//! A node's children start at its own offset plus its self value, one after another; each
//! level's x offsets are delta-encoded: a node stores the gap since the previous node of the
//! same level ended (its absolute offset, for the first). `names[0]` is `total`, the root.

use std::collections::HashMap;

use firn_query::{FlameNode, MergedProfile};

use crate::api::querier::messages::{FlameGraph, FlameGraphDiff, Level};
use crate::api::types::{LabelPair, Point, ProfileType, Series};

/// Interns frame names; index 0 is the root, `total`.
struct Names<'a> {
    names: Vec<String>,
    index: HashMap<&'a str, i64>,
}

impl<'a> Names<'a> {
    fn new() -> Self {
        Self {
            names: vec!["total".to_owned()],
            index: HashMap::from([("total", 0)]),
        }
    }

    fn get(&mut self, name: &'a str) -> i64 {
        let next = self.names.len() as i64;
        *self.index.entry(name).or_insert_with(|| {
            self.names.push(name.to_owned());
            next
        })
    }
}

/// Walks the tree level by level, left to right, handing each node with its absolute left and
/// right offsets to `emit`.
fn levels<'a>(root: &'a FlameNode, mut emit: impl FnMut(usize, &'a FlameNode, [i64; 2])) {
    let mut current: Vec<(&FlameNode, [i64; 2])> = vec![(root, [0, 0])];
    let mut depth = 0;
    while !current.is_empty() {
        let mut next = Vec::new();
        for (node, offsets) in current {
            emit(depth, node, offsets);
            let right_self = node.right.map_or(0, |r| r.1);
            let mut child = [
                offsets[0].saturating_add(node.self_value),
                offsets[1].saturating_add(right_self),
            ];
            for c in &node.children {
                next.push((c, child));
                child[0] = child[0].saturating_add(c.total);
                child[1] = child[1].saturating_add(c.right.map_or(0, |r| r.0));
            }
        }
        current = next;
        depth += 1;
    }
}

/// A merged flame graph in Pyroscope's level encoding.
pub fn flamegraph(graph: &firn_query::FlameGraph) -> FlameGraph {
    let mut names = Names::new();
    let mut out: Vec<Level> = Vec::new();
    let mut ends: Vec<i64> = Vec::new();
    let mut max_self = 0i64;
    levels(&graph.root, |depth, node, [offset, _]| {
        if out.len() == depth {
            out.push(Level { values: Vec::new() });
            ends.push(0);
        }
        let name = if depth == 0 { 0 } else { names.get(&node.name) };
        out[depth].values.extend([
            offset.saturating_sub(ends[depth]),
            node.total,
            node.self_value,
            name,
        ]);
        ends[depth] = offset.saturating_add(node.total);
        max_self = max_self.max(node.self_value);
    });
    FlameGraph {
        names: names.names,
        levels: out,
        total: graph.root.total,
        max_self,
    }
}

/// A diff flame graph: left values, right values, then the name, per node.
pub fn flamegraph_diff(graph: &firn_query::FlameGraph) -> FlameGraphDiff {
    let mut names = Names::new();
    let mut out: Vec<Level> = Vec::new();
    let mut ends: Vec<[i64; 2]> = Vec::new();
    let mut max_self = 0i64;
    levels(&graph.root, |depth, node, offsets| {
        if out.len() == depth {
            out.push(Level { values: Vec::new() });
            ends.push([0, 0]);
        }
        let (right_total, right_self) = node.right.unwrap_or((0, 0));
        let name = if depth == 0 { 0 } else { names.get(&node.name) };
        out[depth].values.extend([
            offsets[0].saturating_sub(ends[depth][0]),
            node.total,
            node.self_value,
            offsets[1].saturating_sub(ends[depth][1]),
            right_total,
            right_self,
            name,
        ]);
        ends[depth] = [
            offsets[0].saturating_add(node.total),
            offsets[1].saturating_add(right_total),
        ];
        max_self = max_self.max(node.self_value).max(right_self);
    });
    let left_ticks = graph.root.total;
    let right_ticks = graph.root.right.map_or(0, |r| r.0);
    FlameGraphDiff {
        names: names.names,
        levels: out,
        total: left_ticks.saturating_add(right_ticks),
        max_self,
        left_ticks,
        right_ticks,
    }
}

/// Pyroscope's tree bytes: pre-order from a virtual root with an empty name, each node as
/// uvarint name length, name, uvarint self, uvarint child count.
pub fn tree(graph: &firn_query::FlameGraph) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack: Vec<(&FlameNode, bool)> = vec![(&graph.root, true)];
    while let Some((node, root)) = stack.pop() {
        let name = if root { "" } else { node.name.as_str() };
        prost::encoding::encode_varint(name.len() as u64, &mut out);
        out.extend_from_slice(name.as_bytes());
        prost::encoding::encode_varint(u64::try_from(node.self_value).unwrap_or(0), &mut out);
        prost::encoding::encode_varint(node.children.len() as u64, &mut out);
        stack.extend(node.children.iter().rev().map(|c| (c, false)));
    }
    out
}

/// Keeps the stacks whose frames, root first, begin with `call_site`.
pub fn retain_call_site(merged: &mut MergedProfile, call_site: &[String]) {
    if call_site.is_empty() {
        return;
    }
    let symbols = &merged.symbols;
    merged.stacks.retain(|&(stack, _)| {
        let mut frames: Vec<&str> = symbols.frame_names(stack).collect();
        frames.reverse();
        frames.len() >= call_site.len() && frames.iter().zip(call_site).all(|(f, c)| *f == c)
    });
}

/// A time series: points at their step's start, in milliseconds.
pub fn series(series: firn_query::Series) -> Series {
    Series {
        labels: series
            .labels
            .into_iter()
            .map(|(name, value)| LabelPair { name, value })
            .collect(),
        points: series
            .points
            .into_iter()
            .map(|(time, value)| Point {
                value,
                timestamp: time.as_millis(),
                annotations: Vec::new(),
            })
            .collect(),
    }
}

pub fn profile_type(t: &firn_storage::ProfileType) -> ProfileType {
    ProfileType {
        id: t.id(),
        name: t.name.clone(),
        sample_type: t.sample_type.clone(),
        sample_unit: t.sample_unit.clone(),
        period_type: t.period_type.clone(),
        period_unit: t.period_unit.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, total: i64, self_value: i64, children: Vec<FlameNode>) -> FlameNode {
        FlameNode {
            name: name.to_owned(),
            total,
            self_value,
            right: None,
            children,
        }
    }

    /// Decodes levels back to absolute offsets: `[(abs, total, self, name)]` per level.
    fn decode(levels: &[Level], width: usize) -> Vec<Vec<Vec<i64>>> {
        levels
            .iter()
            .map(|l| {
                let mut end = 0;
                l.values
                    .chunks(width)
                    .map(|n| {
                        let abs = n[0] + end;
                        end = abs + n[1];
                        let mut v = n.to_vec();
                        v[0] = abs;
                        v
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn levels_are_delta_encoded_with_self_space_first() {
        // total 10: main (10, self 1) -> a (6, self 6), b (3, self 3)
        let graph = firn_query::FlameGraph {
            root: node(
                "total",
                10,
                0,
                vec![node(
                    "main",
                    10,
                    1,
                    vec![node("a", 6, 6, vec![]), node("b", 3, 3, vec![])],
                )],
            ),
            nodes: 4,
        };
        let fg = flamegraph(&graph);
        assert_eq!(fg.names, ["total", "main", "a", "b"]);
        assert_eq!((fg.total, fg.max_self), (10, 6));
        let values: Vec<&[i64]> = fg.levels.iter().map(|l| l.values.as_slice()).collect();
        assert_eq!(
            values,
            [
                &[0, 10, 0, 0][..],
                &[0, 10, 1, 1],
                &[1, 6, 6, 2, 0, 3, 3, 3]
            ]
        );
        let absolute = decode(&fg.levels, 4);
        assert_eq!(absolute[2], [vec![1, 6, 6, 2], vec![7, 3, 3, 3]]);
    }

    #[test]
    fn diff_levels_carry_both_sides() {
        let mut root = node(
            "total",
            4,
            0,
            vec![node("x", 4, 4, vec![]), node("y", 0, 0, vec![])],
        );
        root.right = Some((9, 0));
        root.children[0].right = Some((2, 2));
        root.children[1].right = Some((7, 7));
        let diff = flamegraph_diff(&firn_query::FlameGraph { root, nodes: 3 });
        assert_eq!((diff.left_ticks, diff.right_ticks, diff.total), (4, 9, 13));
        assert_eq!(diff.max_self, 7);
        assert_eq!(
            diff.levels[1].values,
            [0, 4, 4, 0, 2, 2, 1, 0, 0, 0, 0, 7, 7, 2]
        );
    }

    #[test]
    fn tree_bytes_are_preorder_from_a_virtual_root() {
        let graph = firn_query::FlameGraph {
            root: node(
                "total",
                5,
                0,
                vec![node("ab", 5, 2, vec![node("c", 3, 3, vec![])])],
            ),
            nodes: 3,
        };
        assert_eq!(tree(&graph), b"\x00\x00\x01\x02ab\x02\x01\x01c\x03\x00");
    }
}
