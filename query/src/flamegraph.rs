//! Flame graphs: a tree of frames grouped by function name, root at the top, each node with a
//! total (itself and below) and a self value. A diff carries a second pair of values.
//! `max_nodes` keeps the largest nodes and folds the rest of each parent into an "other" node.

use std::collections::HashMap;

use serde::Serialize;

use firn_storage::symbols::UNKNOWN_FRAME;

use crate::merged::MergedProfile;

/// The name of the node that holds what `max_nodes` truncated.
pub const OTHER: &str = "other";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlameNode {
    pub name: String,
    pub total: i64,
    #[serde(rename = "self")]
    pub self_value: i64,
    /// In a diff: the right-hand selection's values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub right: Option<(i64, i64)>,
    pub children: Vec<FlameNode>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlameGraph {
    pub root: FlameNode,
    /// Nodes in the tree, root included.
    pub nodes: usize,
}

#[derive(Default)]
struct Arena {
    names: Vec<u32>,
    values: Vec<[i64; 4]>, // total, self, right total, right self
    parent: Vec<usize>,
    depth: Vec<u32>,
    /// Children as linked lists (first child, next sibling): no allocation per node.
    first_child: Vec<usize>,
    next_sibling: Vec<usize>,
    /// Frame names, interned so the hot path allocates nothing.
    frame_ids: HashMap<String, u32>,
    frames: Vec<String>,
}

impl Arena {
    /// An arena with room for `nodes` nodes: growing the vectors while building
    /// costs more than the building itself.
    fn with_capacity(nodes: usize) -> Self {
        let mut a = Arena {
            names: Vec::with_capacity(nodes),
            values: Vec::with_capacity(nodes),
            parent: Vec::with_capacity(nodes),
            depth: Vec::with_capacity(nodes),
            first_child: Vec::with_capacity(nodes),
            next_sibling: Vec::with_capacity(nodes),
            ..Default::default()
        };
        let total = a.intern("total");
        a.push(usize::MAX, total);
        a
    }

    fn intern(&mut self, frame: &str) -> u32 {
        if let Some(&id) = self.frame_ids.get(frame) {
            return id;
        }
        let id = self.frames.len() as u32;
        self.frames.push(frame.to_owned());
        self.frame_ids.insert(frame.to_owned(), id);
        id
    }

    fn push(&mut self, parent: usize, name: u32) -> usize {
        let id = self.names.len();
        self.names.push(name);
        self.values.push([0; 4]);
        self.parent.push(parent);
        let depth = if parent == usize::MAX {
            0
        } else {
            self.depth[parent] + 1
        };
        self.depth.push(depth);
        self.first_child.push(usize::MAX);
        self.next_sibling.push(usize::MAX);
        if parent != usize::MAX {
            self.next_sibling[id] = self.first_child[parent];
            self.first_child[parent] = id;
        }
        id
    }

    /// Builds the tree from stacks given as paths of arena name ids (root first) in `names`,
    /// one `(start, len, value, side)` span each. Sorted by path, stacks sharing a prefix are
    /// neighbours: each stack keeps the nodes of the common prefix with the previous one and
    /// pushes the rest, so the tree is built without a lookup per frame.
    fn add_all(&mut self, names: &[u32], mut spans: Vec<(usize, usize, i64, usize)>) {
        let path_of = |&(start, len, _, _): &(usize, usize, i64, usize)| &names[start..start + len];
        spans.sort_unstable_by(|a, b| path_of(a).cmp(path_of(b)));
        let mut nodes: Vec<usize> = Vec::new(); // the previous path's nodes, root excluded
        let mut previous: &[u32] = &[];
        for span in &spans {
            let path = path_of(span);
            let common = path
                .iter()
                .zip(previous)
                .take_while(|(a, b)| a == b)
                .count();
            nodes.truncate(common);
            for &name in &path[common..] {
                let parent = nodes.last().copied().unwrap_or(0);
                nodes.push(self.push(parent, name));
            }
            let (value, side) = (span.2, span.3);
            for &n in std::iter::once(&0).chain(nodes.iter()) {
                self.values[n][2 * side] = self.values[n][2 * side].saturating_add(value);
            }
            let leaf = nodes.last().copied().unwrap_or(0);
            self.values[leaf][2 * side + 1] = self.values[leaf][2 * side + 1].saturating_add(value);
            previous = path;
        }
    }
}

impl FlameGraph {
    pub fn from_merged(profile: &MergedProfile, max_nodes: usize) -> Self {
        Self::build(&[profile], max_nodes, false)
    }

    /// Both selections in one tree; `total`/`self` are the left's, `right` the right's.
    pub fn diff(left: &MergedProfile, right: &MergedProfile, max_nodes: usize) -> Self {
        Self::build(&[left, right], max_nodes, true)
    }

    fn build(sides: &[&MergedProfile], max_nodes: usize, diff: bool) -> Self {
        // At most one node per frame of every stack (fewer as prefixes are shared).
        let frames: usize = sides
            .iter()
            .flat_map(|p| {
                p.stacks
                    .iter()
                    .map(|&(s, _)| p.symbols.stack(s).locations.len())
            })
            .sum();
        let mut arena = Arena::with_capacity(frames.saturating_add(1).min(1 << 22));
        let mut names: Vec<u32> = Vec::with_capacity(frames);
        let mut spans = Vec::with_capacity(sides.iter().map(|p| p.stacks.len()).sum());
        for (side, profile) in sides.iter().enumerate() {
            // Each profile's string references map to arena name ids once, so the per-frame
            // work is integer lookups.
            let symbols = &profile.symbols;
            let mut ids: Vec<Option<u32>> = vec![None; symbols.strings().len()];
            let unknown = arena.intern(UNKNOWN_FRAME);
            for &(stack, value) in &profile.stacks {
                let start = names.len();
                for name in symbols.frame_name_refs(stack) {
                    names.push(match name {
                        None => unknown,
                        Some(r) => {
                            *ids[r as usize].get_or_insert_with(|| arena.intern(symbols.string(r)))
                        }
                    });
                }
                names[start..].reverse();
                spans.push((start, names.len() - start, value, side));
            }
        }
        arena.add_all(&names, spans);
        // Keep the largest nodes; a parent is never smaller than its child, so sorting by
        // (size desc, depth asc) keeps every kept node's parent.
        let size = |v: &[i64; 4]| v[0].abs().max(v[2].abs());
        let key = |n: usize| (std::cmp::Reverse(size(&arena.values[n])), arena.depth[n], n);
        let mut order: Vec<usize> = (1..arena.names.len()).collect();
        let budget = max_nodes.max(1).saturating_sub(1).min(order.len());
        // Only the kept nodes need ordering: select them, then sort those.
        if budget < order.len() {
            order.select_nth_unstable_by_key(budget, |&n| key(n));
            order.truncate(budget);
        }
        order.sort_unstable_by_key(|&n| key(n));
        let mut keep = vec![false; arena.names.len()];
        keep[0] = true;
        for &n in &order {
            keep[n] = keep[arena.parent[n]];
        }
        let root = Self::emit(&arena, 0, &keep, diff);
        let nodes = count(&root);
        FlameGraph { root, nodes }
    }

    fn emit(arena: &Arena, n: usize, keep: &[bool], diff: bool) -> FlameNode {
        let v = arena.values[n];
        let mut children: Vec<FlameNode> = Vec::new();
        let mut other = [0i64; 4];
        let mut c = arena.first_child[n];
        while c != usize::MAX {
            let next = arena.next_sibling[c];
            if keep[c] {
                children.push(Self::emit(arena, c, keep, diff));
            } else {
                let cv = arena.values[c];
                other[0] = other[0].saturating_add(cv[0]);
                other[2] = other[2].saturating_add(cv[2]);
            }
            c = next;
        }
        children.sort_by(|a, b| a.name.cmp(&b.name));
        if other[0] != 0 || other[2] != 0 {
            children.push(FlameNode {
                name: OTHER.to_owned(),
                total: other[0],
                self_value: other[0],
                right: diff.then_some((other[2], other[2])),
                children: Vec::new(),
            });
        }
        FlameNode {
            name: arena.frames[arena.names[n] as usize].clone(),
            total: v[0],
            self_value: v[1],
            right: diff.then_some((v[2], v[3])),
            children,
        }
    }
}

fn count(node: &FlameNode) -> usize {
    1 + node.children.iter().map(count).sum::<usize>()
}
