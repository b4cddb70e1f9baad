//! Flame graphs: a tree of frames grouped by function name, root at the top, each node with a
//! total (itself and below) and a self value. A diff carries a second pair of values.
//! `max_nodes` keeps the largest nodes and folds the rest of each parent into an "other" node.

use std::collections::HashMap;

use serde::Serialize;

use firn_storage::symbols::UNKNOWN_FRAME;

use crate::hash::BuildIdHasher;
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
    children: Vec<Vec<usize>>,
    /// Child of (parent, frame name id).
    index: HashMap<(usize, u32), usize, BuildIdHasher>,
    /// Frame names, interned so the hot path allocates nothing.
    frame_ids: HashMap<String, u32>,
    frames: Vec<String>,
}

impl Arena {
    fn new() -> Self {
        let mut a = Arena::default();
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
        self.children.push(Vec::new());
        if parent != usize::MAX {
            self.children[parent].push(id);
        }
        id
    }

    /// Adds a stack given as arena name ids, root first.
    fn add(&mut self, names_root_first: &[u32], value: i64, side: usize) {
        let mut node = 0;
        self.values[0][2 * side] = self.values[0][2 * side].saturating_add(value);
        for &name in names_root_first {
            node = match self.index.get(&(node, name)) {
                Some(&n) => n,
                None => {
                    let n = self.push(node, name);
                    self.index.insert((node, name), n);
                    n
                }
            };
            self.values[node][2 * side] = self.values[node][2 * side].saturating_add(value);
        }
        self.values[node][2 * side + 1] = self.values[node][2 * side + 1].saturating_add(value);
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
        let mut arena = Arena::new();
        for (side, profile) in sides.iter().enumerate() {
            // Each profile's string references map to arena name ids once, so the per-frame
            // work is integer lookups.
            let symbols = &profile.symbols;
            let mut ids: Vec<Option<u32>> = vec![None; symbols.strings().len()];
            let unknown = arena.intern(UNKNOWN_FRAME);
            let mut path: Vec<u32> = Vec::new();
            for &(stack, value) in &profile.stacks {
                path.clear();
                for name in symbols.frame_name_refs(stack) {
                    path.push(match name {
                        None => unknown,
                        Some(r) => {
                            *ids[r as usize].get_or_insert_with(|| arena.intern(symbols.string(r)))
                        }
                    });
                }
                path.reverse();
                arena.add(&path, value, side);
            }
        }
        // Keep the largest nodes; a parent is never smaller than its child, so sorting by
        // (size desc, depth asc) keeps every kept node's parent.
        let size = |v: &[i64; 4]| v[0].abs().max(v[2].abs());
        let mut order: Vec<usize> = (1..arena.names.len()).collect();
        order.sort_unstable_by_key(|&n| {
            (std::cmp::Reverse(size(&arena.values[n])), arena.depth[n], n)
        });
        let mut keep = vec![false; arena.names.len()];
        keep[0] = true;
        let budget = max_nodes.max(1).saturating_sub(1);
        for &n in order.iter().take(budget) {
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
        for &c in &arena.children[n] {
            if keep[c] {
                children.push(Self::emit(arena, c, keep, diff));
            } else {
                let cv = arena.values[c];
                other[0] = other[0].saturating_add(cv[0]);
                other[2] = other[2].saturating_add(cv[2]);
            }
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
