//! Stack sums: the answer to the commonest query, kept in the block beside the rows it sums.
//!
//! For each series of a tenant in a block (profile type, delta and label set), the sum of its
//! values by stack over every one of the block's rows of that series. A merge whose time range
//! covers the block, and whose selector is decided series by series (profile type, delta, label
//! equality), adds these up instead of reading the rows: a compacted hour holds a few thousand
//! sums against a million rows. A block gets them only when they are that much smaller than its
//! rows ([`MIN_ROWS_PER_SUM`]), so a per-flush block (a profile or two a series) pays nothing.
//!
//! The encoding is a columnar protobuf message compressed with zstd, behind a magic and version,
//! like the symbols'. Deterministic: the same sums give the same bytes.

use std::collections::{BTreeMap, HashMap};

use prost::Message;

use crate::filter::ScanFilter;

const MAGIC: &[u8; 5] = b"FSUM1";
const ZSTD_LEVEL: i32 = 3;

/// A tenant's rows of a block get sums only if there are at least this many rows per sum.
pub const MIN_ROWS_PER_SUM: u64 = 4;

/// One series' sums: values by the block's stack ordinal, ordinals rising.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesSums {
    pub profile_type: String,
    pub delta: bool,
    /// The labels its rows carry (a label they lack is absent).
    pub labels: BTreeMap<String, String>,
    pub ordinals: Vec<u32>,
    pub values: Vec<i64>,
}

impl SeriesSums {
    /// True when every row of the series passes `filter`'s profile type, delta and label
    /// matchers (time is the caller's to prove, from the block's range).
    pub fn passes(&self, filter: &ScanFilter) -> bool {
        filter.keeps_profile_type(&self.profile_type)
            && filter.delta.is_none_or(|d| d == self.delta)
            && filter
                .labels
                .iter()
                .all(|m| m.matches(self.labels.get(&m.name).map(String::as_str)))
    }
}

/// A tenant's sums in one block, series in (profile type, delta, labels) order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantSums {
    pub series: Vec<SeriesSums>,
}

impl TenantSums {
    pub fn entries(&self) -> usize {
        self.series.iter().map(|s| s.ordinals.len()).sum()
    }

    /// Memory held, roughly, for cache accounting.
    pub fn memory_bytes(&self) -> usize {
        let labels: usize = self
            .series
            .iter()
            .flat_map(|s| s.labels.iter())
            .map(|(k, v)| k.len() + v.len() + 64)
            .sum();
        12 * self.entries() + labels + 96 * self.series.len()
    }
}

/// A series as the builder keys it: profile type, delta and labels (name, value), in order.
type SeriesKey = (String, bool, Vec<(String, String)>);

/// Sums a tenant's rows into series as they are added; what the block writer feeds.
#[derive(Debug, Default)]
pub struct SumsBuilder {
    series: BTreeMap<SeriesKey, HashMap<u32, i64>>,
    rows: u64,
}

impl SumsBuilder {
    /// The series a profile row belongs to; its samples are then added to the returned map.
    pub fn series(
        &mut self,
        profile_type: &str,
        delta: bool,
        labels: Vec<(String, String)>,
    ) -> &mut HashMap<u32, i64> {
        self.series
            .entry((profile_type.to_owned(), delta, labels))
            .or_default()
    }

    /// Counts sample rows (the denominator of [`MIN_ROWS_PER_SUM`]).
    pub fn add_rows(&mut self, rows: u64) {
        self.rows += rows;
    }

    /// The sums, or `None` when they would not be [`MIN_ROWS_PER_SUM`] times fewer than the
    /// rows.
    pub fn finish(self) -> Option<TenantSums> {
        let entries: u64 = self.series.values().map(|s| s.len() as u64).sum();
        if entries == 0 || entries.saturating_mul(MIN_ROWS_PER_SUM) > self.rows {
            return None;
        }
        let series = self
            .series
            .into_iter()
            .map(|((profile_type, delta, labels), sums)| {
                let mut sums: Vec<(u32, i64)> = sums.into_iter().collect();
                sums.sort_unstable();
                SeriesSums {
                    profile_type,
                    delta,
                    labels: labels.into_iter().collect(),
                    ordinals: sums.iter().map(|s| s.0).collect(),
                    values: sums.iter().map(|s| s.1).collect(),
                }
            })
            .collect();
        Some(TenantSums { series })
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct SumsFile {
    /// Profile types, label names and values, each once.
    #[prost(string, repeated, tag = "1")]
    strings: Vec<String>,
    #[prost(uint32, repeated, tag = "2")]
    profile_type: Vec<u32>,
    #[prost(bool, repeated, tag = "3")]
    delta: Vec<bool>,
    #[prost(uint32, repeated, tag = "4")]
    label_count: Vec<u32>,
    #[prost(uint32, repeated, tag = "5")]
    label_name: Vec<u32>,
    #[prost(uint32, repeated, tag = "6")]
    label_value: Vec<u32>,
    #[prost(uint32, repeated, tag = "7")]
    entry_count: Vec<u32>,
    /// Each ordinal less the one before it in its series (the first: itself).
    #[prost(uint32, repeated, tag = "8")]
    ordinal_step: Vec<u32>,
    #[prost(sint64, repeated, tag = "9")]
    value: Vec<i64>,
}

/// Serialises a tenant's sums.
pub fn encode_sums(sums: &TenantSums) -> Vec<u8> {
    let mut file = SumsFile::default();
    let mut strings: HashMap<String, u32> = HashMap::new();
    let mut intern = |s: &str, file: &mut SumsFile| -> u32 {
        *strings.entry(s.to_owned()).or_insert_with(|| {
            file.strings.push(s.to_owned());
            (file.strings.len() - 1) as u32
        })
    };
    for series in &sums.series {
        let pt = intern(&series.profile_type, &mut file);
        file.profile_type.push(pt);
        file.delta.push(series.delta);
        file.label_count.push(series.labels.len() as u32);
        for (name, value) in &series.labels {
            let (n, v) = (intern(name, &mut file), intern(value, &mut file));
            file.label_name.push(n);
            file.label_value.push(v);
        }
        file.entry_count.push(series.ordinals.len() as u32);
        let mut previous = 0;
        for (&ordinal, &value) in series.ordinals.iter().zip(&series.values) {
            file.ordinal_step.push(ordinal - previous);
            file.value.push(value);
            previous = ordinal;
        }
    }
    let mut out = MAGIC.to_vec();
    out.extend(
        zstd::bulk::compress(&file.encode_to_vec(), ZSTD_LEVEL)
            .expect("zstd compression of an in-memory buffer cannot fail"),
    );
    out
}

/// Reads what [`encode_sums`] wrote, decompressing at most `max_decompressed` bytes.
pub fn decode_sums(bytes: &[u8], max_decompressed: usize) -> Result<TenantSums, String> {
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or("stack sums do not start with FSUM1")?;
    let raw = zstd::bulk::decompress(body, max_decompressed).map_err(|e| format!("zstd: {e}"))?;
    let file = SumsFile::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))?;
    let n = file.profile_type.len();
    if file.delta.len() != n || file.label_count.len() != n || file.entry_count.len() != n {
        return Err(format!("{n} series with unequal column lengths"));
    }
    if file.label_name.len() != file.label_value.len()
        || file.ordinal_step.len() != file.value.len()
    {
        return Err("label or entry columns of unequal lengths".into());
    }
    let string = |i: u32| {
        file.strings
            .get(i as usize)
            .cloned()
            .ok_or_else(|| format!("string {i} of {}", file.strings.len()))
    };
    let (mut label, mut entry) = (0usize, 0usize);
    let mut series = Vec::with_capacity(n);
    for s in 0..n {
        let labels_end = label + file.label_count[s] as usize;
        let entries_end = entry + file.entry_count[s] as usize;
        if labels_end > file.label_name.len() || entries_end > file.value.len() {
            return Err(format!("series {s} runs past the columns"));
        }
        let mut labels = BTreeMap::new();
        for l in label..labels_end {
            labels.insert(string(file.label_name[l])?, string(file.label_value[l])?);
        }
        let mut ordinals = Vec::with_capacity(entries_end - entry);
        let mut previous = 0u32;
        for &step in &file.ordinal_step[entry..entries_end] {
            previous = previous
                .checked_add(step)
                .ok_or_else(|| format!("series {s}: an ordinal past 2^32"))?;
            ordinals.push(previous);
        }
        series.push(SeriesSums {
            profile_type: string(file.profile_type[s])?,
            delta: file.delta[s],
            labels,
            ordinals,
            values: file.value[entry..entries_end].to_vec(),
        });
        (label, entry) = (labels_end, entries_end);
    }
    if label != file.label_name.len() || entry != file.value.len() {
        return Err("columns longer than their series".into());
    }
    Ok(TenantSums { series })
}

#[cfg(test)]
mod tests;
