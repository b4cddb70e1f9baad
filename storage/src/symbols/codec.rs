//! The on-disk form of a symbol table: a columnar protobuf message compressed with zstd,
//! prefixed by a magic and version. Deterministic: the same table gives the same bytes.
//!
//! A stack's id is the fingerprint of its locations' contents, so version 2 leaves the ids out
//! (16 incompressible bytes a stack, a quarter of an hour block's symbols) and the reader
//! recomputes them. The writer checks every id against its recomputed fingerprint and keeps
//! the few that differ (a location folded into one with another mapping base, say), listed by
//! stack. Version 1 files, every id stored, are still read.

use prost::Message;

use super::{Function, Line, Location, Mapping, Stack, SymbolTable};
use crate::ids::StackId;

/// Stack ids stored.
const MAGIC_V1: &[u8; 5] = b"FSYM1";
/// Stack ids recomputed from the locations.
const MAGIC_V2: &[u8; 5] = b"FSYM2";
/// Stack ids stored, not compressed: a query's answer ([`encode_symbols_for_answer`]).
const MAGIC_ANSWER: &[u8; 5] = b"FSYA1";
const ZSTD_LEVEL: i32 = 3;

#[derive(Clone, PartialEq, prost::Message)]
struct SymbolFile {
    #[prost(string, repeated, tag = "1")]
    strings: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    mappings: Vec<MappingProto>,
    #[prost(uint32, repeated, tag = "3")]
    fn_name: Vec<u32>,
    #[prost(uint32, repeated, tag = "4")]
    fn_system_name: Vec<u32>,
    #[prost(uint32, repeated, tag = "5")]
    fn_filename: Vec<u32>,
    #[prost(int64, repeated, tag = "6")]
    fn_start_line: Vec<i64>,
    #[prost(uint32, repeated, tag = "7")]
    loc_mapping: Vec<u32>,
    #[prost(uint64, repeated, tag = "8")]
    loc_address: Vec<u64>,
    #[prost(uint32, repeated, tag = "9")]
    loc_line_count: Vec<u32>,
    #[prost(bool, repeated, tag = "10")]
    loc_folded: Vec<bool>,
    #[prost(uint32, repeated, tag = "11")]
    line_function: Vec<u32>,
    #[prost(int64, repeated, tag = "12")]
    line_number: Vec<i64>,
    #[prost(bytes = "vec", tag = "13")]
    stack_ids: Vec<u8>,
    #[prost(uint32, repeated, tag = "14")]
    stack_len: Vec<u32>,
    #[prost(uint32, repeated, tag = "15")]
    stack_locations: Vec<u32>,
    /// Version 2: the stacks whose ids `stack_ids` holds (in this order); the others' ids are
    /// their fingerprints.
    #[prost(uint32, repeated, tag = "16")]
    explicit_ids: Vec<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MappingProto {
    #[prost(uint64, tag = "1")]
    memory_start: u64,
    #[prost(uint64, tag = "2")]
    memory_limit: u64,
    #[prost(uint64, tag = "3")]
    file_offset: u64,
    #[prost(uint32, tag = "4")]
    filename: u32,
    #[prost(uint32, tag = "5")]
    build_id: u32,
    #[prost(uint32, tag = "6")]
    flags: u32,
}

/// Serialises a table.
pub fn encode_symbols(table: &SymbolTable) -> Vec<u8> {
    let raw = symbol_file(table, false).encode_to_vec();
    let mut out = MAGIC_V2.to_vec();
    out.extend(
        zstd::bulk::compress(&raw, ZSTD_LEVEL)
            .expect("zstd compression of an in-memory buffer cannot fail"),
    );
    out
}

/// Serialises a table for a query's answer (a shard's symbols sent to the coordinator): every
/// stack id stored and nothing compressed, since it is read once, right away: on one node,
/// compressing, decompressing and recomputing the ids were a fifth of an hour's merge, and
/// between nodes the bytes (tens to hundreds of kilobytes) are a LAN's to carry.
pub fn encode_symbols_for_answer(table: &SymbolTable) -> Vec<u8> {
    let mut out = MAGIC_ANSWER.to_vec();
    out.extend(symbol_file(table, true).encode_to_vec());
    out
}

/// The protobuf of `table`, with every stack's id (`all_ids`) or only those its locations'
/// fingerprint does not give.
fn symbol_file(table: &SymbolTable, all_ids: bool) -> SymbolFile {
    let mut file = SymbolFile {
        strings: table.strings.clone(),
        mappings: table
            .mappings
            .iter()
            .map(|m| MappingProto {
                memory_start: m.memory_start,
                memory_limit: m.memory_limit,
                file_offset: m.file_offset,
                filename: m.filename,
                build_id: m.build_id,
                flags: m.flags,
            })
            .collect(),
        ..Default::default()
    };
    for f in &table.functions {
        file.fn_name.push(f.name);
        file.fn_system_name.push(f.system_name);
        file.fn_filename.push(f.filename);
        file.fn_start_line.push(f.start_line);
    }
    for l in &table.locations {
        file.loc_mapping.push(l.mapping);
        file.loc_address.push(l.address);
        file.loc_line_count.push(l.lines.len() as u32);
        file.loc_folded.push(l.is_folded);
        for line in l.lines.iter() {
            file.line_function.push(line.function);
            file.line_number.push(line.line);
        }
    }
    let keys = if all_ids {
        Vec::new()
    } else {
        location_keys(table)
    };
    for (i, s) in table.stacks.iter().enumerate() {
        if all_ids {
            file.stack_ids.extend_from_slice(&s.id.to_bytes());
        } else if s.id != stack_id(&keys, &s.locations) {
            file.explicit_ids.push(i as u32);
            file.stack_ids.extend_from_slice(&s.id.to_bytes());
        }
        file.stack_len.push(s.locations.len() as u32);
        file.stack_locations.extend_from_slice(&s.locations);
    }
    file
}

/// Reads a table written by [`encode_symbols`] or [`encode_symbols_for_answer`], checking every
/// reference and at most `max_decompressed` bytes of protobuf. The result is meant
/// for lookups and for copying stacks out, not for interning into: the string and function
/// maps interning would use are left empty (building them cost a copy of every string, a
/// sizeable part of decoding a block's table on every query that misses the cache).
pub fn decode_symbols(bytes: &[u8], max_decompressed: usize) -> Result<SymbolTable, String> {
    let unzstd =
        |body| zstd::bulk::decompress(body, max_decompressed).map_err(|e| format!("zstd: {e}"));
    let (raw, ids_stored) = if let Some(body) = bytes.strip_prefix(MAGIC_V2.as_slice()) {
        (std::borrow::Cow::Owned(unzstd(body)?), false)
    } else if let Some(body) = bytes.strip_prefix(MAGIC_V1.as_slice()) {
        (std::borrow::Cow::Owned(unzstd(body)?), true)
    } else if let Some(body) = bytes.strip_prefix(MAGIC_ANSWER.as_slice()) {
        if body.len() > max_decompressed {
            return Err(format!(
                "{} bytes of symbols, more than the {max_decompressed} allowed",
                body.len()
            ));
        }
        (std::borrow::Cow::Borrowed(body), true)
    } else {
        return Err("missing symbol file magic".into());
    };
    let file = SymbolFile::decode(raw.as_ref()).map_err(|e| format!("protobuf: {e}"))?;
    let strings = file.strings.len() as u32;
    let check = |what: &str, r: u32, len: u32| {
        if r >= len {
            Err(format!(
                "{what} reference {r} is out of range (length {len})"
            ))
        } else {
            Ok(())
        }
    };
    let mut table = SymbolTable {
        strings: file.strings,
        ..Default::default()
    };
    for m in file.mappings {
        check("mapping string", m.filename, strings)?;
        check("mapping string", m.build_id, strings)?;
        table.mappings.push(Mapping {
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: m.filename,
            build_id: m.build_id,
            flags: m.flags,
        });
    }
    let functions = file.fn_name.len();
    if [
        file.fn_system_name.len(),
        file.fn_filename.len(),
        file.fn_start_line.len(),
    ]
    .iter()
    .any(|&n| n != functions)
    {
        return Err("function columns differ in length".into());
    }
    table.functions.reserve(functions);
    for i in 0..functions {
        for r in [file.fn_name[i], file.fn_system_name[i], file.fn_filename[i]] {
            check("function string", r, strings)?;
        }
        let f = Function {
            name: file.fn_name[i],
            system_name: file.fn_system_name[i],
            filename: file.fn_filename[i],
            start_line: file.fn_start_line[i],
        };
        table.functions.push(f);
    }
    let locations = file.loc_mapping.len();
    if [
        file.loc_address.len(),
        file.loc_line_count.len(),
        file.loc_folded.len(),
    ]
    .iter()
    .any(|&n| n != locations)
        || file.line_function.len() != file.line_number.len()
    {
        return Err("location columns differ in length".into());
    }
    let mut next_line = 0usize;
    for i in 0..locations {
        let mapping = file.loc_mapping[i];
        if mapping != 0 {
            check("location mapping", mapping - 1, table.mappings.len() as u32)?;
        }
        let count = file.loc_line_count[i] as usize;
        let end = next_line
            .checked_add(count)
            .filter(|&e| e <= file.line_function.len())
            .ok_or("line count overruns")?;
        let mut lines = Vec::with_capacity(count);
        for j in next_line..end {
            check("line function", file.line_function[j], functions as u32)?;
            lines.push(Line {
                function: file.line_function[j],
                line: file.line_number[j],
            });
        }
        next_line = end;
        table.locations.push(Location {
            mapping,
            address: file.loc_address[i],
            lines: lines.into(),
            is_folded: file.loc_folded[i],
        });
    }
    let stacks = file.stack_len.len();
    let explicit = if ids_stored {
        if !file.explicit_ids.is_empty() {
            return Err("a file with every stack id lists explicit ones".into());
        }
        stacks
    } else {
        file.explicit_ids.len()
    };
    if file.stack_ids.len() != 16 * explicit {
        return Err("stack id column has the wrong length".into());
    }
    if !file.explicit_ids.windows(2).all(|w| w[0] < w[1])
        || file
            .explicit_ids
            .last()
            .is_some_and(|&l| l as usize >= stacks)
    {
        return Err("explicit stack ids are not rising stack indices".into());
    }
    let keys = if ids_stored {
        Vec::new()
    } else {
        location_keys(&table)
    };
    let mut explicit_ids = file.explicit_ids.iter().peekable();
    let mut next_id = 0usize;
    let mut next = 0usize;
    for (i, &len) in file.stack_len.iter().enumerate() {
        let end = next
            .checked_add(len as usize)
            .filter(|&e| e <= file.stack_locations.len())
            .ok_or("stack overruns")?;
        let locs = &file.stack_locations[next..end];
        for &l in locs {
            check("stack location", l, locations as u32)?;
        }
        next = end;
        let stored = ids_stored || explicit_ids.next_if(|&&e| e as usize == i).is_some();
        let id = if stored {
            let id = StackId::from_bytes(&file.stack_ids[16 * next_id..16 * next_id + 16])
                .expect("slice is 16 bytes");
            next_id += 1;
            id
        } else {
            stack_id(&keys, locs)
        };
        table.stack_refs.insert(id, i as u32);
        table.stacks.push(Stack {
            id,
            locations: locs.into(),
        });
    }
    table.bytes = bytes.len() * 4;
    Ok(table)
}

/// The content fingerprint of every location of `table`.
fn location_keys(table: &SymbolTable) -> Vec<u128> {
    (0..table.locations.len() as u32)
        .map(|l| table.location_key(l))
        .collect()
}

/// A stack's id from its locations (checked to be in range).
fn stack_id(keys: &[u128], locations: &[u32]) -> StackId {
    super::stack_fingerprint(locations.iter().map(|&l| keys[l as usize]))
}

/// How many stacks of a version 2 file keep their ids (tests: a pprof's should all be
/// fingerprints).
#[cfg(test)]
pub(super) fn explicit_ids(bytes: &[u8]) -> usize {
    let body = bytes.strip_prefix(MAGIC_V2.as_slice()).expect("version 2");
    let raw = zstd::bulk::decompress(body, 1 << 26).expect("zstd");
    SymbolFile::decode(raw.as_slice())
        .expect("protobuf")
        .explicit_ids
        .len()
}
