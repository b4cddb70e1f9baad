//! A write's symbols as a replica reads them from the log: its stack ids at once, everything
//! else (strings, mappings, functions, locations, lines, each stack's locations) as flat
//! columns decoded only when the write holds a stack the table does not know yet. Building
//! [`LocalSymbols`] costs an allocation per string, location and stack, about as much as
//! normalising the profile again; a write whose stacks are all known (the common case: a
//! service's stacks repeat) costs one hash lookup a stack.
//!
//! [`SymbolSource`] is what interning reads, implemented by both forms, so a write applies the
//! same way, to the same references, whichever form it arrives in.

use std::sync::OnceLock;

use prost::Message;

use super::{Function, Line, LocalSymbols, Mapping, SymbolRef, SymbolTable};
use crate::ids::StackId;

/// The symbols of one write, as interning reads them. Indices are the write's local ones.
pub trait SymbolSource {
    /// Makes ready everything interning into `table` will read, or says why it cannot.
    fn prepare(&self, _table: &SymbolTable) -> Result<(), String> {
        Ok(())
    }
    fn string(&self, s: usize) -> &str;
    fn mapping(&self, m: usize) -> &Mapping;
    fn function(&self, f: usize) -> &Function;
    fn location_count(&self) -> usize;
    fn location_fingerprint(&self, l: usize) -> u128;
    /// Index + 1 into the mappings; 0 when unknown.
    fn location_mapping(&self, l: usize) -> u32;
    fn location_address(&self, l: usize) -> u64;
    fn location_folded(&self, l: usize) -> bool;
    fn location_lines(&self, l: usize) -> &[Line];
    fn stack_count(&self) -> usize;
    fn stack_id(&self, s: usize) -> StackId;
    fn stack_locations(&self, s: usize) -> &[SymbolRef];
    /// Bytes of string data, for the buffer's estimate.
    fn string_bytes(&self) -> usize;
    /// Location references of every stack together.
    fn stack_location_count(&self) -> usize;
}

impl SymbolSource for LocalSymbols {
    fn string(&self, s: usize) -> &str {
        &self.strings[s]
    }
    fn mapping(&self, m: usize) -> &Mapping {
        &self.mappings[m]
    }
    fn function(&self, f: usize) -> &Function {
        &self.functions[f]
    }
    fn location_count(&self) -> usize {
        self.locations.len()
    }
    fn location_fingerprint(&self, l: usize) -> u128 {
        self.locations[l].0
    }
    fn location_mapping(&self, l: usize) -> u32 {
        self.locations[l].1.mapping
    }
    fn location_address(&self, l: usize) -> u64 {
        self.locations[l].1.address
    }
    fn location_folded(&self, l: usize) -> bool {
        self.locations[l].1.is_folded
    }
    fn location_lines(&self, l: usize) -> &[Line] {
        &self.locations[l].1.lines
    }
    fn stack_count(&self) -> usize {
        self.stacks.len()
    }
    fn stack_id(&self, s: usize) -> StackId {
        self.stacks[s].id
    }
    fn stack_locations(&self, s: usize) -> &[SymbolRef] {
        &self.stacks[s].locations
    }
    fn string_bytes(&self) -> usize {
        self.strings.iter().map(String::len).sum()
    }
    fn stack_location_count(&self) -> usize {
        self.stacks.iter().map(|s| s.locations.len()).sum()
    }
}

/// The columns of a write's symbols on the wire.
#[derive(Clone, PartialEq, Message)]
struct ColumnsProto {
    /// Every string, concatenated, and each one's length.
    #[prost(string, tag = "1")]
    string_data: String,
    #[prost(uint32, repeated, tag = "2")]
    string_lens: Vec<u32>,
    #[prost(uint64, repeated, tag = "3")]
    map_memory_start: Vec<u64>,
    #[prost(uint64, repeated, tag = "4")]
    map_memory_limit: Vec<u64>,
    #[prost(uint64, repeated, tag = "5")]
    map_file_offset: Vec<u64>,
    #[prost(uint32, repeated, tag = "6")]
    map_filename: Vec<u32>,
    #[prost(uint32, repeated, tag = "7")]
    map_build_id: Vec<u32>,
    #[prost(uint32, repeated, tag = "8")]
    map_flags: Vec<u32>,
    #[prost(uint32, repeated, tag = "9")]
    fn_name: Vec<u32>,
    #[prost(uint32, repeated, tag = "10")]
    fn_system_name: Vec<u32>,
    #[prost(uint32, repeated, tag = "11")]
    fn_filename: Vec<u32>,
    #[prost(int64, repeated, tag = "12")]
    fn_start_line: Vec<i64>,
    /// 16 bytes a location: its content fingerprint.
    #[prost(bytes = "vec", tag = "13")]
    loc_fingerprint: Vec<u8>,
    #[prost(uint32, repeated, tag = "14")]
    loc_mapping: Vec<u32>,
    #[prost(uint64, repeated, tag = "15")]
    loc_address: Vec<u64>,
    #[prost(uint32, repeated, tag = "16")]
    loc_line_count: Vec<u32>,
    #[prost(bool, repeated, tag = "17")]
    loc_folded: Vec<bool>,
    #[prost(uint32, repeated, tag = "18")]
    line_function: Vec<u32>,
    #[prost(int64, repeated, tag = "19")]
    line_number: Vec<i64>,
    #[prost(uint32, repeated, tag = "20")]
    stack_len: Vec<u32>,
    #[prost(uint32, repeated, tag = "21")]
    stack_locations: Vec<u32>,
}

/// The decoded columns: indexes checked against each other.
#[derive(Clone, Debug, Default, PartialEq)]
struct Columns {
    /// Every string, concatenated; `string_ends[i]` is where string `i` ends.
    string_data: String,
    string_ends: Vec<u32>,
    mappings: Vec<Mapping>,
    functions: Vec<Function>,
    loc_fingerprints: Vec<u128>,
    loc_mapping: Vec<u32>,
    loc_address: Vec<u64>,
    loc_folded: Vec<bool>,
    /// `loc_line_ends[i]` is where location `i`'s lines end in `lines`.
    loc_line_ends: Vec<u32>,
    lines: Vec<Line>,
    /// `stack_ends[i]` is where stack `i`'s locations end in `stack_locations`.
    stack_ends: Vec<u32>,
    stack_locations: Vec<SymbolRef>,
}

/// A write's symbols read from the log: stack ids now, the rest when first needed.
#[derive(Debug)]
pub struct PackedSymbols {
    stack_ids: Vec<StackId>,
    string_bytes: usize,
    location_count: usize,
    stack_location_count: usize,
    /// The encoded columns.
    columns_bytes: bytes::Bytes,
    columns: OnceLock<Result<Box<Columns>, String>>,
}

/// The counts a write's header carries about its symbols (for budgets, before decoding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SymbolCounts {
    pub string_bytes: usize,
    pub locations: usize,
    pub stack_locations: usize,
}

/// Encodes `local`'s columns (everything but the stack ids); returns the bytes and the counts.
pub fn encode_columns(local: &LocalSymbols) -> (Vec<u8>, SymbolCounts) {
    let (maps, fns, locs) = (
        local.mappings.len(),
        local.functions.len(),
        local.locations.len(),
    );
    let lines: usize = local.locations.iter().map(|(_, l)| l.lines.len()).sum();
    let mut p = ColumnsProto {
        string_data: String::with_capacity(local.strings.iter().map(String::len).sum()),
        string_lens: Vec::with_capacity(local.strings.len()),
        map_memory_start: Vec::with_capacity(maps),
        map_memory_limit: Vec::with_capacity(maps),
        map_file_offset: Vec::with_capacity(maps),
        map_filename: Vec::with_capacity(maps),
        map_build_id: Vec::with_capacity(maps),
        map_flags: Vec::with_capacity(maps),
        fn_name: Vec::with_capacity(fns),
        fn_system_name: Vec::with_capacity(fns),
        fn_filename: Vec::with_capacity(fns),
        fn_start_line: Vec::with_capacity(fns),
        loc_fingerprint: Vec::with_capacity(16 * locs),
        loc_mapping: Vec::with_capacity(locs),
        loc_address: Vec::with_capacity(locs),
        loc_line_count: Vec::with_capacity(locs),
        loc_folded: Vec::with_capacity(locs),
        line_function: Vec::with_capacity(lines),
        line_number: Vec::with_capacity(lines),
        stack_len: Vec::with_capacity(local.stacks.len()),
        stack_locations: Vec::with_capacity(local.stack_location_count()),
    };
    for string in &local.strings {
        p.string_data.push_str(string);
        p.string_lens.push(string.len() as u32);
    }
    for m in &local.mappings {
        p.map_memory_start.push(m.memory_start);
        p.map_memory_limit.push(m.memory_limit);
        p.map_file_offset.push(m.file_offset);
        p.map_filename.push(m.filename);
        p.map_build_id.push(m.build_id);
        p.map_flags.push(m.flags);
    }
    for f in &local.functions {
        p.fn_name.push(f.name);
        p.fn_system_name.push(f.system_name);
        p.fn_filename.push(f.filename);
        p.fn_start_line.push(f.start_line);
    }
    for (fingerprint, l) in &local.locations {
        p.loc_fingerprint
            .extend_from_slice(&fingerprint.to_be_bytes());
        p.loc_mapping.push(l.mapping);
        p.loc_address.push(l.address);
        p.loc_line_count.push(l.lines.len() as u32);
        p.loc_folded.push(l.is_folded);
        for line in l.lines.iter() {
            p.line_function.push(line.function);
            p.line_number.push(line.line);
        }
    }
    for stack in &local.stacks {
        p.stack_len.push(stack.locations.len() as u32);
        p.stack_locations.extend_from_slice(&stack.locations);
    }
    let counts = SymbolCounts {
        string_bytes: p.string_data.len(),
        locations: local.locations.len(),
        stack_locations: p.stack_locations.len(),
    };
    (p.encode_to_vec(), counts)
}

/// Checks that every reference in `refs` is below `len`.
pub(crate) fn check(
    what: &str,
    refs: impl IntoIterator<Item = u32>,
    len: usize,
) -> Result<(), String> {
    for r in refs {
        if r as usize >= len {
            return Err(format!(
                "{what} reference {r} is out of range (length {len})"
            ));
        }
    }
    Ok(())
}

/// 16-byte big-endian ids from `bytes`, which must hold exactly `count`.
pub(crate) fn ids(bytes: &[u8], count: usize, what: &str) -> Result<Vec<u128>, String> {
    if bytes.len() != 16 * count {
        return Err(format!("{what}: {} bytes for {count} ids", bytes.len()));
    }
    Ok(bytes
        .chunks_exact(16)
        .map(|c| u128::from_be_bytes(c.try_into().expect("16 bytes")))
        .collect())
}

/// The running ends of `lens`, or an error if they do not add up to `total`.
fn ends(lens: &[u32], total: usize, what: &str) -> Result<Vec<u32>, String> {
    let mut end = 0u64;
    let out: Vec<u32> = lens
        .iter()
        .map(|&l| {
            end += u64::from(l);
            end as u32
        })
        .collect();
    if end != total as u64 {
        return Err(format!("{what}: lengths add up to {end}, not {total}"));
    }
    Ok(out)
}

fn same_lengths(what: &str, lens: &[usize]) -> Result<(), String> {
    if lens.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!("{what} columns differ in length"));
    }
    Ok(())
}

/// The range `i` covers in a column whose ends are `ends`.
fn span(ends: &[u32], i: usize) -> std::ops::Range<usize> {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    start..ends[i] as usize
}

impl Columns {
    fn decode(bytes: &[u8], counts: SymbolCounts, stacks: usize) -> Result<Self, String> {
        let p = ColumnsProto::decode(bytes).map_err(|e| format!("symbol columns: {e}"))?;
        let string_ends = ends(&p.string_lens, p.string_data.len(), "strings")?;
        let mut start = 0usize;
        for &end in &string_ends {
            let end = end as usize;
            if !p.string_data.is_char_boundary(start) || !p.string_data.is_char_boundary(end) {
                return Err("a string does not end on a character boundary".into());
            }
            start = end;
        }
        let strings = string_ends.len();
        let maps = p.map_memory_start.len();
        same_lengths(
            "mapping",
            &[
                maps,
                p.map_memory_limit.len(),
                p.map_file_offset.len(),
                p.map_filename.len(),
                p.map_build_id.len(),
                p.map_flags.len(),
            ],
        )?;
        check(
            "mapping string",
            p.map_filename.iter().chain(&p.map_build_id).copied(),
            strings,
        )?;
        let mappings = (0..maps)
            .map(|i| Mapping {
                memory_start: p.map_memory_start[i],
                memory_limit: p.map_memory_limit[i],
                file_offset: p.map_file_offset[i],
                filename: p.map_filename[i],
                build_id: p.map_build_id[i],
                flags: p.map_flags[i],
            })
            .collect();
        let fns = p.fn_name.len();
        same_lengths(
            "function",
            &[
                fns,
                p.fn_system_name.len(),
                p.fn_filename.len(),
                p.fn_start_line.len(),
            ],
        )?;
        check(
            "function string",
            p.fn_name
                .iter()
                .chain(&p.fn_system_name)
                .chain(&p.fn_filename)
                .copied(),
            strings,
        )?;
        let functions = (0..fns)
            .map(|i| Function {
                name: p.fn_name[i],
                system_name: p.fn_system_name[i],
                filename: p.fn_filename[i],
                start_line: p.fn_start_line[i],
            })
            .collect();
        let locs = p.loc_mapping.len();
        same_lengths(
            "location",
            &[
                locs,
                p.loc_address.len(),
                p.loc_line_count.len(),
                p.loc_folded.len(),
            ],
        )?;
        if p.loc_mapping.iter().any(|&m| m as usize > maps) {
            return Err("a location's mapping is out of range".into());
        }
        let loc_fingerprints = ids(&p.loc_fingerprint, locs, "location fingerprints")?;
        same_lengths("line", &[p.line_function.len(), p.line_number.len()])?;
        let loc_line_ends = ends(&p.loc_line_count, p.line_function.len(), "location lines")?;
        check("line function", p.line_function.iter().copied(), fns)?;
        let lines = p
            .line_function
            .iter()
            .zip(&p.line_number)
            .map(|(&function, &line)| Line { function, line })
            .collect();
        if p.stack_len.len() != stacks {
            return Err(format!(
                "{} stack lengths for {stacks} stacks",
                p.stack_len.len()
            ));
        }
        let stack_ends = ends(&p.stack_len, p.stack_locations.len(), "stack locations")?;
        check("stack location", p.stack_locations.iter().copied(), locs)?;
        let found = SymbolCounts {
            string_bytes: p.string_data.len(),
            locations: locs,
            stack_locations: p.stack_locations.len(),
        };
        if found != counts {
            return Err(format!(
                "the symbols hold {found:?}, the header says {counts:?}"
            ));
        }
        Ok(Self {
            string_data: p.string_data,
            string_ends,
            mappings,
            functions,
            loc_fingerprints,
            loc_mapping: p.loc_mapping,
            loc_address: p.loc_address,
            loc_folded: p.loc_folded,
            loc_line_ends,
            lines,
            stack_ends,
            stack_locations: p.stack_locations,
        })
    }
}

impl PackedSymbols {
    /// Symbols whose columns are `columns_bytes`, as [`encode_columns`] wrote them.
    pub fn new(stack_ids: Vec<StackId>, counts: SymbolCounts, columns_bytes: bytes::Bytes) -> Self {
        Self {
            stack_ids,
            string_bytes: counts.string_bytes,
            location_count: counts.locations,
            stack_location_count: counts.stack_locations,
            columns_bytes,
            columns: OnceLock::new(),
        }
    }

    fn counts(&self) -> SymbolCounts {
        SymbolCounts {
            string_bytes: self.string_bytes,
            locations: self.location_count,
            stack_locations: self.stack_location_count,
        }
    }

    /// Decodes and checks every column now (a leader does, before proposing a write it did
    /// not normalise itself).
    pub fn validate(&self) -> Result<(), String> {
        self.decoded().map(|_| ())
    }

    fn decoded(&self) -> Result<&Columns, String> {
        self.columns
            .get_or_init(|| {
                Columns::decode(&self.columns_bytes, self.counts(), self.stack_ids.len())
                    .map(Box::new)
            })
            .as_deref()
            .map_err(Clone::clone)
    }

    fn columns(&self) -> &Columns {
        match self.columns.get() {
            Some(Ok(c)) => c,
            _ => unreachable_columns(),
        }
    }
}

/// Interning reads columns only after [`SymbolSource::prepare`] decoded them; reaching here
/// would be a bug in the buffer, not bad input.
#[cold]
fn unreachable_columns() -> ! {
    panic!("a packed write's columns were read before they were prepared")
}

impl SymbolSource for PackedSymbols {
    fn prepare(&self, table: &SymbolTable) -> Result<(), String> {
        if self
            .stack_ids
            .iter()
            .all(|id| table.stack_ref(*id).is_some())
        {
            return Ok(());
        }
        self.validate()
    }
    fn string(&self, s: usize) -> &str {
        let c = self.columns();
        &c.string_data[span(&c.string_ends, s)]
    }
    fn mapping(&self, m: usize) -> &Mapping {
        &self.columns().mappings[m]
    }
    fn function(&self, f: usize) -> &Function {
        &self.columns().functions[f]
    }
    fn location_count(&self) -> usize {
        self.location_count
    }
    fn location_fingerprint(&self, l: usize) -> u128 {
        self.columns().loc_fingerprints[l]
    }
    fn location_mapping(&self, l: usize) -> u32 {
        self.columns().loc_mapping[l]
    }
    fn location_address(&self, l: usize) -> u64 {
        self.columns().loc_address[l]
    }
    fn location_folded(&self, l: usize) -> bool {
        self.columns().loc_folded[l]
    }
    fn location_lines(&self, l: usize) -> &[Line] {
        let c = self.columns();
        &c.lines[span(&c.loc_line_ends, l)]
    }
    fn stack_count(&self) -> usize {
        self.stack_ids.len()
    }
    fn stack_id(&self, s: usize) -> StackId {
        self.stack_ids[s]
    }
    fn stack_locations(&self, s: usize) -> &[SymbolRef] {
        let c = self.columns();
        &c.stack_locations[span(&c.stack_ends, s)]
    }
    fn string_bytes(&self) -> usize {
        self.string_bytes
    }
    fn stack_location_count(&self) -> usize {
        self.stack_location_count
    }
}
