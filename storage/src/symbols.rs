//! Symbol tables: strings, mappings, functions, locations and stacks, each deduplicated.
//!
//! A write arrives as a [`LocalSymbols`] (the symbols of one profile, indexed locally, with each
//! stack's content fingerprint already computed off the write lock) and is interned into a
//! [`SymbolTable`] in write order, so every replica that applies the same writes assigns the same
//! references. Stacks are identified by a [`StackId`], a 128-bit fingerprint of their frames'
//! content, which is the same in every table; a table's dense `u32` references are private to it.

mod codec;
pub(crate) mod packed;

use std::collections::HashMap as StdHashMap;

/// The tables' maps: foldhash, seeded per process (symbols come from clients, so the hash
/// must not be predictable), several times faster than SipHash on short strings and ids.
pub(crate) type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

use xxhash_rust::xxh3::Xxh3;

pub use codec::{decode_symbols, encode_symbols, encode_symbols_for_answer};
pub use packed::{PackedSymbols, SymbolCounts, SymbolSource, encode_columns};

use crate::ids::StackId;

/// A reference into one of a table's vectors: dense, assigned in first-seen order.
pub type SymbolRef = u32;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mapping {
    pub memory_start: u64,
    pub memory_limit: u64,
    pub file_offset: u64,
    pub filename: SymbolRef,
    pub build_id: SymbolRef,
    /// Bits: 1 has_functions, 2 has_filenames, 4 has_line_numbers, 8 has_inline_frames.
    pub flags: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Function {
    pub name: SymbolRef,
    pub system_name: SymbolRef,
    pub filename: SymbolRef,
    pub start_line: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Line {
    pub function: SymbolRef,
    pub line: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Index + 1 into the mappings; 0 when the mapping is unknown.
    pub mapping: u32,
    pub address: u64,
    /// Innermost inlined callee first, as in pprof.
    pub lines: Box<[Line]>,
    pub is_folded: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stack {
    pub id: StackId,
    /// Leaf first, as in pprof.
    pub locations: Box<[SymbolRef]>,
}

/// The symbols of one write, indexed locally. Strings are owned; everything else refers to the
/// local vectors. Built by normalisation, consumed by [`SymbolTable::intern`].
#[derive(Clone, Debug, Default)]
pub struct LocalSymbols {
    pub strings: Vec<String>,
    pub mappings: Vec<Mapping>,
    pub functions: Vec<Function>,
    /// Each location with its content fingerprint.
    pub locations: Vec<(u128, Location)>,
    pub stacks: Vec<Stack>,
}

/// A deduplicating symbol table. Append-only: references never change once assigned, so a
/// reader holding a shorter view of the same table stays valid.
#[derive(Debug, Default)]
pub struct SymbolTable {
    strings: Vec<String>,
    string_refs: HashMap<String, SymbolRef>,
    mappings: Vec<Mapping>,
    mapping_refs: HashMap<MappingKey, SymbolRef>,
    functions: Vec<Function>,
    function_refs: HashMap<Function, SymbolRef>,
    locations: Vec<Location>,
    location_refs: HashMap<u128, SymbolRef>,
    stacks: Vec<Stack>,
    stack_refs: HashMap<StackId, SymbolRef>,
    bytes: usize,
}

/// Mapping identity as `profile.Merge` defines it: size rounded up to 4 KiB, file offset, and
/// build id (or file name when there is none).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct MappingKey {
    size: u64,
    file_offset: u64,
    identity: SymbolRef,
}

/// A write's local references already interned, filled as interning reaches them.
struct LocalMaps {
    strings: Vec<Option<SymbolRef>>,
    functions: Vec<Option<SymbolRef>>,
    mappings: Vec<Option<SymbolRef>>,
    locations: Vec<Option<SymbolRef>>,
}

/// Rough per-entry overhead of the hash maps, for memory accounting.
const ENTRY_OVERHEAD: usize = 48;

impl SymbolTable {
    pub fn new() -> Self {
        let mut table = Self::default();
        table.intern_string("");
        table
    }

    /// Approximate heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.bytes
    }

    pub fn stack_count(&self) -> usize {
        self.stacks.len()
    }

    pub fn string(&self, r: SymbolRef) -> &str {
        &self.strings[r as usize]
    }

    pub fn strings(&self) -> &[String] {
        &self.strings
    }

    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    pub fn locations(&self) -> &[Location] {
        &self.locations
    }

    pub fn stacks(&self) -> &[Stack] {
        &self.stacks
    }

    pub fn stack(&self, r: SymbolRef) -> &Stack {
        &self.stacks[r as usize]
    }

    pub fn stack_ref(&self, id: StackId) -> Option<SymbolRef> {
        self.stack_refs.get(&id).copied()
    }

    pub fn intern_string(&mut self, s: &str) -> SymbolRef {
        if let Some(&r) = self.string_refs.get(s) {
            return r;
        }
        let r = self.strings.len() as SymbolRef;
        self.bytes += 2 * s.len() + ENTRY_OVERHEAD + 24;
        self.strings.push(s.to_owned());
        self.string_refs.insert(s.to_owned(), r);
        r
    }

    fn intern_mapping(&mut self, m: Mapping) -> SymbolRef {
        let size = m
            .memory_limit
            .saturating_sub(m.memory_start)
            .div_ceil(4096)
            .saturating_mul(4096);
        let identity = if m.build_id != 0 {
            m.build_id
        } else {
            m.filename
        };
        let key = MappingKey {
            size,
            file_offset: m.file_offset,
            identity,
        };
        if let Some(&r) = self.mapping_refs.get(&key) {
            return r;
        }
        let r = self.mappings.len() as SymbolRef;
        self.bytes += 2 * std::mem::size_of::<Mapping>() + ENTRY_OVERHEAD;
        self.mappings.push(m);
        self.mapping_refs.insert(key, r);
        r
    }

    fn intern_function(&mut self, f: Function) -> SymbolRef {
        if let Some(&r) = self.function_refs.get(&f) {
            return r;
        }
        let r = self.functions.len() as SymbolRef;
        self.bytes += 2 * std::mem::size_of::<Function>() + ENTRY_OVERHEAD;
        self.functions.push(f.clone());
        self.function_refs.insert(f, r);
        r
    }

    /// Interns a write's symbols and returns, for each local stack, its reference in this table.
    /// Only stacks not seen before cost more than one hash lookup.
    pub fn intern(&mut self, local: &impl SymbolSource) -> Vec<SymbolRef> {
        let mut maps = LocalMaps {
            strings: Vec::new(),
            functions: Vec::new(),
            mappings: Vec::new(),
            locations: vec![None; local.location_count()],
        };
        let mut out = Vec::with_capacity(local.stack_count());
        for s in 0..local.stack_count() {
            let id = local.stack_id(s);
            if let Some(&r) = self.stack_refs.get(&id) {
                out.push(r);
                continue;
            }
            let stack_locations = local.stack_locations(s);
            let mut locations = Vec::with_capacity(stack_locations.len());
            for &l in stack_locations {
                let r = match maps.locations[l as usize] {
                    Some(r) => r,
                    None => {
                        let r = self.intern_local_location(local, l as usize, &mut maps);
                        maps.locations[l as usize] = Some(r);
                        r
                    }
                };
                locations.push(r);
            }
            out.push(self.push_stack(Stack {
                id,
                locations: locations.into(),
            }));
        }
        out
    }

    fn push_stack(&mut self, stack: Stack) -> SymbolRef {
        let r = self.stacks.len() as SymbolRef;
        self.bytes += std::mem::size_of::<Stack>() + 4 * stack.locations.len() + ENTRY_OVERHEAD;
        self.stack_refs.insert(stack.id, r);
        self.stacks.push(stack);
        r
    }

    fn intern_local_location(
        &mut self,
        local: &impl SymbolSource,
        l: usize,
        maps: &mut LocalMaps,
    ) -> SymbolRef {
        let key = local.location_fingerprint(l);
        if let Some(&r) = self.location_refs.get(&key) {
            return r;
        }
        let string = |table: &mut Self, strings: &mut Vec<Option<SymbolRef>>, s: SymbolRef| {
            let s = s as usize;
            if strings.len() <= s {
                strings.resize(s + 1, None);
            }
            *strings[s].get_or_insert_with(|| table.intern_string(local.string(s)))
        };
        let mapping = match local.location_mapping(l) {
            0 => 0,
            m => {
                let m = m as usize - 1;
                if maps.mappings.len() <= m {
                    maps.mappings.resize(m + 1, None);
                }
                match maps.mappings[m] {
                    Some(r) => r + 1,
                    None => {
                        let lm = local.mapping(m);
                        let mapped = Mapping {
                            filename: string(self, &mut maps.strings, lm.filename),
                            build_id: string(self, &mut maps.strings, lm.build_id),
                            ..lm.clone()
                        };
                        let r = self.intern_mapping(mapped);
                        maps.mappings[m] = Some(r);
                        r + 1
                    }
                }
            }
        };
        let local_lines = local.location_lines(l);
        let mut lines = Vec::with_capacity(local_lines.len());
        for line in local_lines {
            let f = line.function as usize;
            if maps.functions.len() <= f {
                maps.functions.resize(f + 1, None);
            }
            let function = match maps.functions[f] {
                Some(r) => r,
                None => {
                    let lf = local.function(f);
                    let mapped = Function {
                        name: string(self, &mut maps.strings, lf.name),
                        system_name: string(self, &mut maps.strings, lf.system_name),
                        filename: string(self, &mut maps.strings, lf.filename),
                        start_line: lf.start_line,
                    };
                    let r = self.intern_function(mapped);
                    maps.functions[f] = Some(r);
                    r
                }
            };
            lines.push(Line {
                function,
                line: line.line,
            });
        }
        let r = self.locations.len() as SymbolRef;
        self.bytes += std::mem::size_of::<Location>() + 16 * lines.len() + ENTRY_OVERHEAD;
        self.locations.push(Location {
            mapping,
            address: local.location_address(l),
            lines: lines.into(),
            is_folded: local.location_folded(l),
        });
        self.location_refs.insert(key, r);
        r
    }

    /// Copies one stack (and everything it refers to) from another table into this one.
    pub fn copy_stack_from(&mut self, other: &SymbolTable, stack: SymbolRef) -> SymbolRef {
        self.copy_stacks_from(other, [stack])[0]
    }

    /// Copies stacks from another table, returning their references here. Each source
    /// location is fingerprinted once per call, however many stacks share it.
    pub fn copy_stacks_from(
        &mut self,
        other: &SymbolTable,
        stacks: impl IntoIterator<Item = SymbolRef>,
    ) -> Vec<SymbolRef> {
        let mut copied: Vec<Option<SymbolRef>> = vec![None; other.locations.len()];
        stacks
            .into_iter()
            .map(|stack| {
                let s = &other.stacks[stack as usize];
                if let Some(&r) = self.stack_refs.get(&s.id) {
                    return r;
                }
                let locations: Vec<SymbolRef> = s
                    .locations
                    .iter()
                    .map(|&l| {
                        *copied[l as usize].get_or_insert_with(|| self.copy_location_from(other, l))
                    })
                    .collect();
                self.push_stack(Stack {
                    id: s.id,
                    locations: locations.into(),
                })
            })
            .collect()
    }

    fn copy_location_from(&mut self, other: &SymbolTable, l: SymbolRef) -> SymbolRef {
        let location = &other.locations[l as usize];
        let key = other.location_key(l);
        if let Some(&r) = self.location_refs.get(&key) {
            return r;
        }
        let mapping = if location.mapping == 0 {
            0
        } else {
            let m = &other.mappings[location.mapping as usize - 1];
            let mapped = Mapping {
                filename: self.intern_string(other.string(m.filename)),
                build_id: self.intern_string(other.string(m.build_id)),
                ..m.clone()
            };
            self.intern_mapping(mapped) + 1
        };
        let lines: Vec<Line> = location
            .lines
            .iter()
            .map(|line| {
                let f = &other.functions[line.function as usize];
                let mapped = Function {
                    name: self.intern_string(other.string(f.name)),
                    system_name: self.intern_string(other.string(f.system_name)),
                    filename: self.intern_string(other.string(f.filename)),
                    start_line: f.start_line,
                };
                Line {
                    function: self.intern_function(mapped),
                    line: line.line,
                }
            })
            .collect();
        let r = self.locations.len() as SymbolRef;
        self.bytes += std::mem::size_of::<Location>() + 16 * lines.len() + ENTRY_OVERHEAD;
        self.locations.push(Location {
            mapping,
            address: location.address,
            lines: lines.into(),
            is_folded: location.is_folded,
        });
        self.location_refs.insert(key, r);
        r
    }

    /// The content fingerprint of one of this table's locations (recomputed; used when copying).
    pub(super) fn location_key(&self, l: SymbolRef) -> u128 {
        let location = &self.locations[l as usize];
        let mapping = (location.mapping != 0).then(|| {
            let m = &self.mappings[location.mapping as usize - 1];
            MappingView {
                identity: if m.build_id != 0 {
                    self.string(m.build_id)
                } else {
                    self.string(m.filename)
                },
                memory_start: m.memory_start,
                file_offset: m.file_offset,
            }
        });
        location_fingerprint(
            mapping,
            location.address,
            location.lines.iter().map(|line| {
                let f = &self.functions[line.function as usize];
                (
                    FunctionView {
                        name: self.string(f.name),
                        system_name: self.string(f.system_name),
                        filename: self.string(f.filename),
                        start_line: f.start_line,
                    },
                    line.line,
                )
            }),
            location.is_folded,
        )
    }

    /// The function names of a stack's frames, leaf first, inlined callees before callers.
    pub fn frame_names(&self, stack: SymbolRef) -> impl Iterator<Item = &str> + '_ {
        self.frame_name_refs(stack)
            .map(|name| name.map_or(UNKNOWN_FRAME, |r| self.string(r)))
    }

    /// Like [`SymbolTable::frame_names`], as string references (`None` for a location without
    /// symbols), so callers can key maps by integer instead of hashing names.
    pub fn frame_name_refs(
        &self,
        stack: SymbolRef,
    ) -> impl Iterator<Item = Option<SymbolRef>> + '_ {
        self.stacks[stack as usize]
            .locations
            .iter()
            .flat_map(move |&l| {
                let location = &self.locations[l as usize];
                let unsymbolized = location.lines.is_empty().then_some(None);
                location
                    .lines
                    .iter()
                    .map(move |line| Some(self.functions[line.function as usize].name))
                    .chain(unsymbolized)
            })
    }
}

/// The name of a frame whose location has no symbols.
pub const UNKNOWN_FRAME: &str = "[unknown]";

/// What identifies a mapping in a location's fingerprint.
#[derive(Clone, Copy, Debug)]
pub struct MappingView<'a> {
    pub identity: &'a str,
    pub memory_start: u64,
    pub file_offset: u64,
}

/// What identifies a function in a location's fingerprint.
#[derive(Clone, Copy, Debug)]
pub struct FunctionView<'a> {
    pub name: &'a str,
    pub system_name: &'a str,
    pub filename: &'a str,
    pub start_line: i64,
}

/// The content fingerprint of a location: mapping identity, address relative to the mapping
/// (so the same code loaded at another address folds together, as `profile.Merge` does), and
/// each line's function and line number.
pub fn location_fingerprint<'a>(
    mapping: Option<MappingView<'a>>,
    address: u64,
    lines: impl Iterator<Item = (FunctionView<'a>, i64)>,
    is_folded: bool,
) -> u128 {
    let mut h = Xxh3::new();
    match mapping {
        Some(m) => {
            h.update(&[1]);
            put_str(&mut h, m.identity);
            h.update(
                &address
                    .wrapping_sub(m.memory_start)
                    .wrapping_add(m.file_offset)
                    .to_le_bytes(),
            );
        }
        None => {
            h.update(&[0]);
            h.update(&address.to_le_bytes());
        }
    }
    for (f, line) in lines {
        put_str(&mut h, f.name);
        put_str(&mut h, f.system_name);
        put_str(&mut h, f.filename);
        h.update(&f.start_line.to_le_bytes());
        h.update(&line.to_le_bytes());
    }
    h.update(&[is_folded as u8]);
    h.digest128()
}

/// The fingerprint of a stack from its locations' fingerprints, leaf first.
pub fn stack_fingerprint(location_keys: impl Iterator<Item = u128>) -> StackId {
    let mut h = Xxh3::new();
    for key in location_keys {
        h.update(&key.to_le_bytes());
    }
    StackId(h.digest128())
}

fn put_str(h: &mut Xxh3, s: &str) {
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

#[cfg(test)]
mod tests;
