//! The pprof codec: bounded gzip detection and decompression, protobuf decoding, validation and
//! encoding. Validation gives a [`ValidProfile`] whose cross-references are all known to resolve,
//! so normalisation can index without checks.

pub mod proto;

use crate::symbols::HashMap;
use std::io::Read;

use flate2::read::MultiGzDecoder;
use prost::Message;

pub use proto::Profile;

use crate::error::{Error, Result};

/// The gzip magic bytes: readers detect compression by these, not by a header (as pprof,
/// Pyroscope and Parca do).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Limits applied while decoding untrusted profiles.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Most bytes a profile may take after decompression; a gzip bomb stops here.
    pub max_decompressed_bytes: usize,
    /// Most table entries (samples, locations, functions, mappings, strings) a profile may
    /// declare. Checked before decoding: a 2-byte empty sample decodes to a 72-byte struct, so
    /// bytes alone do not bound memory.
    pub max_entries: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_decompressed_bytes: 64 << 20,
            max_entries: 2_000_000,
        }
    }
}

/// Returns the raw protobuf bytes of `input`, gunzipping it first when it starts with the gzip
/// magic. Never allocates more than `limits.max_decompressed_bytes` (+1 to detect the overrun).
pub fn decompress(input: &[u8], limits: DecodeLimits) -> Result<std::borrow::Cow<'_, [u8]>> {
    if !input.starts_with(&GZIP_MAGIC) {
        if input.len() > limits.max_decompressed_bytes {
            return Err(Error::DecompressedTooLarge {
                limit: limits.max_decompressed_bytes,
            });
        }
        return Ok(std::borrow::Cow::Borrowed(input));
    }
    let limit = limits.max_decompressed_bytes;
    let mut out = Vec::with_capacity(input.len().saturating_mul(4).min(limit));
    MultiGzDecoder::new(input)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|source| Error::Decompress { source })?;
    if out.len() > limit {
        return Err(Error::DecompressedTooLarge { limit });
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Decodes and validates a raw or gzipped pprof profile.
pub fn decode(input: &[u8], limits: DecodeLimits) -> Result<ValidProfile> {
    let raw = decompress(input, limits)?;
    let entries = count_entries(&raw);
    if entries > limits.max_entries {
        return Err(Error::InvalidProfile {
            reason: format!(
                "profile declares {entries} samples, locations, functions, mappings and strings, \
                 the limit is {}",
                limits.max_entries
            ),
        });
    }
    let profile =
        Profile::decode(raw.as_ref()).map_err(|source| Error::ProfileDecode { source })?;
    ValidProfile::new(profile)
}

/// Counts the length-delimited top-level fields 1 to 6 (the repeated tables) of a protobuf
/// message without decoding it. Stops at the first malformed field; the decoder reports it.
fn count_entries(mut bytes: &[u8]) -> usize {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut count = 0;
    while let Some(tag) = varint(&mut bytes) {
        let skip = match tag & 7 {
            0 => match varint(&mut bytes) {
                Some(_) => 0,
                None => break,
            },
            1 => 8,
            2 => match varint(&mut bytes) {
                Some(len) => {
                    if (1..=6).contains(&(tag >> 3)) {
                        count += 1;
                    }
                    usize::try_from(len).unwrap_or(usize::MAX)
                }
                None => break,
            },
            5 => 4,
            _ => break,
        };
        if skip > bytes.len() {
            break;
        }
        bytes = &bytes[skip..];
    }
    count
}

/// Encodes a profile as gzipped protobuf, the form `go tool pprof` writes and reads.
pub fn encode_gzip(profile: &Profile) -> Vec<u8> {
    use std::io::Write;
    let raw = profile.encode_to_vec();
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 3),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(&raw)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// A profile whose string, mapping, location and function references all resolve, and whose
/// samples each carry one value per sample type.
#[derive(Debug)]
pub struct ValidProfile {
    profile: Profile,
    mapping_index: IdIndex,
    location_index: IdIndex,
    function_index: IdIndex,
}

/// Table positions by id. Profiles usually number their tables 1, 2, 3, ... (Go's do): then
/// the position is the id minus one and no map is built.
#[derive(Debug)]
enum IdIndex {
    Dense(usize),
    Map(HashMap<u64, usize>),
}

impl IdIndex {
    fn get(&self, id: u64) -> Option<usize> {
        match self {
            IdIndex::Dense(n) => (id >= 1 && id <= *n as u64).then(|| id as usize - 1),
            IdIndex::Map(map) => map.get(&id).copied(),
        }
    }

    fn contains(&self, id: u64) -> bool {
        self.get(id).is_some()
    }
}

impl ValidProfile {
    /// Checks every reference the way Go's `CheckValid` does, plus string indices.
    pub fn new(profile: Profile) -> Result<Self> {
        let invalid = |reason: String| Err(Error::InvalidProfile { reason });
        match profile.string_table.first() {
            Some(first) if first.is_empty() => {}
            Some(first) => {
                return invalid(format!("string_table[0] must be \"\", found {first:?}"));
            }
            None if profile.sample.is_empty() => {}
            None => return invalid("string_table is empty; string_table[0] must be \"\"".into()),
        }
        let strings = profile.string_table.len().max(1);
        // The field's name is only formatted when the check fails: this runs for every
        // function and label of every profile.
        let check_str = |field: &dyn Fn() -> String, index: i64| -> Result<()> {
            if index < 0 || index as usize >= strings {
                return Err(Error::InvalidProfile {
                    reason: format!(
                        "{} = {index} is outside string_table (length {strings})",
                        field()
                    ),
                });
            }
            Ok(())
        };
        if !profile.sample.is_empty() && profile.sample_type.is_empty() {
            return invalid("profile has samples but no sample_type".into());
        }
        for (i, vt) in profile.sample_type.iter().enumerate() {
            check_str(&|| format!("sample_type[{i}].type"), vt.r#type)?;
            check_str(&|| format!("sample_type[{i}].unit"), vt.unit)?;
        }
        if let Some(pt) = &profile.period_type {
            check_str(&|| "period_type.type".to_owned(), pt.r#type)?;
            check_str(&|| "period_type.unit".to_owned(), pt.unit)?;
        }
        check_str(&|| "drop_frames".to_owned(), profile.drop_frames)?;
        check_str(&|| "keep_frames".to_owned(), profile.keep_frames)?;
        check_str(
            &|| "default_sample_type".to_owned(),
            profile.default_sample_type,
        )?;
        check_str(&|| "doc_url".to_owned(), profile.doc_url)?;
        for (i, c) in profile.comment.iter().enumerate() {
            check_str(&|| format!("comment[{i}]"), *c)?;
        }

        let mapping_index = index_ids("mapping", profile.mapping.iter().map(|m| m.id))?;
        for (i, m) in profile.mapping.iter().enumerate() {
            check_str(&|| format!("mapping[{i}].filename"), m.filename)?;
            check_str(&|| format!("mapping[{i}].build_id"), m.build_id)?;
        }
        let function_index = index_ids("function", profile.function.iter().map(|f| f.id))?;
        for (i, f) in profile.function.iter().enumerate() {
            check_str(&|| format!("function[{i}].name"), f.name)?;
            check_str(&|| format!("function[{i}].system_name"), f.system_name)?;
            check_str(&|| format!("function[{i}].filename"), f.filename)?;
        }
        let location_index = index_ids("location", profile.location.iter().map(|l| l.id))?;
        for (i, l) in profile.location.iter().enumerate() {
            if l.mapping_id != 0 && !mapping_index.contains(l.mapping_id) {
                return invalid(format!(
                    "location[{i}].mapping_id = {} is not in the mapping table",
                    l.mapping_id
                ));
            }
            for (j, line) in l.line.iter().enumerate() {
                if !function_index.contains(line.function_id) {
                    return invalid(format!(
                        "location[{i}].line[{j}].function_id = {} is not in the function table",
                        line.function_id
                    ));
                }
            }
        }
        let values = profile.sample_type.len();
        for (i, s) in profile.sample.iter().enumerate() {
            if s.value.len() != values {
                return invalid(format!(
                    "sample[{i}] has {} values but there are {values} sample types",
                    s.value.len()
                ));
            }
            for id in &s.location_id {
                if !location_index.contains(*id) {
                    return invalid(format!(
                        "sample[{i}].location_id {id} is not in the location table"
                    ));
                }
            }
            for (j, label) in s.label.iter().enumerate() {
                check_str(&|| format!("sample[{i}].label[{j}].key"), label.key)?;
                check_str(&|| format!("sample[{i}].label[{j}].str"), label.str)?;
                check_str(
                    &|| format!("sample[{i}].label[{j}].num_unit"),
                    label.num_unit,
                )?;
            }
        }
        Ok(Self {
            profile,
            mapping_index,
            location_index,
            function_index,
        })
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn into_profile(self) -> Profile {
        self.profile
    }

    /// The string at a validated index.
    pub fn string(&self, index: i64) -> &str {
        self.profile
            .string_table
            .get(index as usize)
            .map_or("", String::as_str)
    }

    /// The position of a location in the location table.
    pub fn location_position(&self, id: u64) -> usize {
        self.location_index.get(id).expect("validated location id")
    }

    /// The position of a function in the function table.
    pub fn function_position(&self, id: u64) -> usize {
        self.function_index.get(id).expect("validated function id")
    }

    /// The position of a mapping in the mapping table, `None` for id 0 (unknown).
    pub fn mapping_position(&self, id: u64) -> Option<usize> {
        self.mapping_index.get(id)
    }

    pub fn location(&self, id: u64) -> &proto::Location {
        &self.profile.location[self.location_position(id)]
    }

    pub fn function(&self, id: u64) -> &proto::Function {
        &self.profile.function[self.function_position(id)]
    }

    /// The mapping of a location, `None` for mapping id 0 (unknown).
    pub fn mapping(&self, id: u64) -> Option<&proto::Mapping> {
        self.mapping_index.get(id).map(|i| &self.profile.mapping[i])
    }
}

/// Maps ids to table positions, rejecting zero and duplicate ids.
fn index_ids(table: &str, ids: impl Iterator<Item = u64> + Clone) -> Result<IdIndex> {
    let mut dense = 0usize;
    for (i, id) in ids.clone().enumerate() {
        if id != i as u64 + 1 {
            break;
        }
        dense = i + 1;
    }
    if dense == ids.clone().count() {
        return Ok(IdIndex::Dense(dense));
    }
    let mut index = HashMap::default();
    for (i, id) in ids.enumerate() {
        if id == 0 {
            return Err(Error::InvalidProfile {
                reason: format!("{table}[{i}].id is 0; ids must be nonzero"),
            });
        }
        if index.insert(id, i).is_some() {
            return Err(Error::InvalidProfile {
                reason: format!("{table}[{i}].id {id} is used twice"),
            });
        }
    }
    Ok(IdIndex::Map(index))
}

#[cfg(test)]
mod tests;
