//! A merged profile: value per stack over a selection, with the symbols of those stacks only.
//! It renders as pprof, a top table, folded text, or (see `flamegraph`) a flame graph.

use std::collections::HashMap;

use firn_storage::ProfileType;
use firn_storage::pprof::proto;
use firn_storage::symbols::{SymbolRef, SymbolTable};
use regex::Regex;
use serde::Serialize;

/// Values per stack, with their symbols.
#[derive(Debug)]
pub struct MergedProfile {
    pub profile_type: Option<ProfileType>,
    pub period: i64,
    pub duration_nanos: i64,
    pub time_nanos: i64,
    pub symbols: SymbolTable,
    /// Stacks (references into `symbols`) and their summed values, in stack-id order.
    pub stacks: Vec<(SymbolRef, i64)>,
}

/// Keeps only stacks that contain a frame matching a function name or a regex.
#[derive(Clone, Debug)]
pub enum StackFilter {
    Function(String),
    Regex(Regex),
}

impl StackFilter {
    fn matches(&self, name: &str) -> bool {
        match self {
            StackFilter::Function(f) => f == name,
            StackFilter::Regex(r) => r.is_match(name),
        }
    }
}

/// One row of a top table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopEntry {
    pub function: String,
    /// Value of samples whose leaf frame is this function.
    pub flat: i64,
    /// Value of samples with this function anywhere in the stack (counted once per stack).
    pub cumulative: i64,
}

impl MergedProfile {
    /// No stacks, of `profile_type` (times and period left zero).
    pub fn empty(profile_type: Option<ProfileType>) -> Self {
        Self {
            profile_type,
            period: 0,
            duration_nanos: 0,
            time_nanos: 0,
            symbols: SymbolTable::new(),
            stacks: Vec::new(),
        }
    }

    pub fn total(&self) -> i64 {
        self.stacks
            .iter()
            .fold(0i64, |t, (_, v)| t.saturating_add(*v))
    }

    /// Frames of a stack, root first.
    pub fn frames_root_first(&self, stack: SymbolRef) -> Vec<&str> {
        let mut frames: Vec<&str> = self.symbols.frame_names(stack).collect();
        frames.reverse();
        frames
    }

    /// Drops the stacks with no frame matching `filter`.
    pub fn retain_stacks(&mut self, filter: &StackFilter) {
        let symbols = &self.symbols;
        self.stacks
            .retain(|&(s, _)| symbols.frame_names(s).any(|f| filter.matches(f)));
    }

    /// Flat and cumulative value per function, highest flat first (then name).
    pub fn top(&self) -> Vec<TopEntry> {
        let mut by_name: HashMap<&str, (i64, i64)> = HashMap::new();
        for &(stack, value) in &self.stacks {
            let frames: Vec<&str> = self.symbols.frame_names(stack).collect();
            if let Some(leaf) = frames.first() {
                let e = by_name.entry(leaf).or_default();
                e.0 = e.0.saturating_add(value);
            }
            // Count a function once per stack, however often it recurses.
            let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
            for f in frames {
                if seen.insert(f) {
                    let e = by_name.entry(f).or_default();
                    e.1 = e.1.saturating_add(value);
                }
            }
        }
        let mut rows: Vec<TopEntry> = by_name
            .into_iter()
            .map(|(name, (flat, cumulative))| TopEntry {
                function: name.to_owned(),
                flat,
                cumulative,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.flat
                .cmp(&a.flat)
                .then(b.cumulative.cmp(&a.cumulative))
                .then(a.function.cmp(&b.function))
        });
        rows
    }

    /// Folded text, `root;...;leaf value`, one line per distinct frame path, sorted.
    pub fn folded(&self) -> String {
        let mut lines: HashMap<String, i64> = HashMap::new();
        for &(stack, value) in &self.stacks {
            let sum = lines
                .entry(self.frames_root_first(stack).join(";"))
                .or_default();
            *sum = sum.saturating_add(value);
        }
        let mut lines: Vec<(String, i64)> = lines.into_iter().collect();
        lines.sort();
        lines
            .into_iter()
            .map(|(path, v)| format!("{path} {v}\n"))
            .collect()
    }

    /// A valid pprof profile (one sample type, the merged profile type) with full location
    /// identity: mappings, addresses, inlined lines.
    pub fn to_pprof(&self) -> proto::Profile {
        let mut strings = StringTable::default();
        let pt = self.profile_type.clone().unwrap_or_else(|| ProfileType {
            name: "profile".into(),
            sample_type: "samples".into(),
            sample_unit: "count".into(),
            period_type: "samples".into(),
            period_unit: "count".into(),
        });
        let mut p = proto::Profile {
            sample_type: vec![proto::ValueType {
                r#type: strings.add(&pt.sample_type),
                unit: strings.add(&pt.sample_unit),
            }],
            period_type: Some(proto::ValueType {
                r#type: strings.add(&pt.period_type),
                unit: strings.add(&pt.period_unit),
            }),
            period: self.period,
            duration_nanos: self.duration_nanos,
            time_nanos: self.time_nanos,
            ..Default::default()
        };
        let t = &self.symbols;
        for (i, m) in t.mappings().iter().enumerate() {
            p.mapping.push(proto::Mapping {
                id: i as u64 + 1,
                memory_start: m.memory_start,
                memory_limit: m.memory_limit,
                file_offset: m.file_offset,
                filename: strings.add(t.string(m.filename)),
                build_id: strings.add(t.string(m.build_id)),
                has_functions: m.flags & 1 != 0,
                has_filenames: m.flags & 2 != 0,
                has_line_numbers: m.flags & 4 != 0,
                has_inline_frames: m.flags & 8 != 0,
            });
        }
        for (i, f) in t.functions().iter().enumerate() {
            p.function.push(proto::Function {
                id: i as u64 + 1,
                name: strings.add(t.string(f.name)),
                system_name: strings.add(t.string(f.system_name)),
                filename: strings.add(t.string(f.filename)),
                start_line: f.start_line,
            });
        }
        for (i, l) in t.locations().iter().enumerate() {
            p.location.push(proto::Location {
                id: i as u64 + 1,
                mapping_id: u64::from(l.mapping),
                address: l.address,
                line: l
                    .lines
                    .iter()
                    .map(|line| proto::Line {
                        function_id: u64::from(line.function) + 1,
                        line: line.line,
                        column: 0,
                    })
                    .collect(),
                is_folded: l.is_folded,
            });
        }
        for &(stack, value) in &self.stacks {
            if value == 0 {
                continue;
            }
            p.sample.push(proto::Sample {
                location_id: t
                    .stack(stack)
                    .locations
                    .iter()
                    .map(|&l| u64::from(l) + 1)
                    .collect(),
                value: vec![value],
                label: Vec::new(),
            });
        }
        p.string_table = strings.strings;
        p
    }
}

#[derive(Default)]
struct StringTable {
    strings: Vec<String>,
    index: HashMap<String, i64>,
}

impl StringTable {
    fn add(&mut self, s: &str) -> i64 {
        if self.strings.is_empty() {
            self.strings.push(String::new());
            self.index.insert(String::new(), 0);
        }
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}
