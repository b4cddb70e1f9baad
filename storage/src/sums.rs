//! Stack sums: the answer to the commonest query, kept in the block beside the rows it sums.
//!
//! For each series of a tenant in a block (profile type, delta and label set), the sum of its
//! values by stack over every one of the block's rows of that series. A merge whose time range
//! covers the block, and whose selector is decided series by series (profile type, delta, label
//! equality), adds these up instead of reading the rows: a compacted hour holds a few thousand
//! sums against a million rows. A block gets them only when they are that much smaller than its
//! rows ([`MIN_ROWS_PER_SUM`]), so a per-flush block (a profile or two a series) pays nothing.
//!
//! A block's sums may be cut into time slices on a fixed grid (5 minutes to a day wide, aligned
//! to the epoch), so that a range which cuts the block adds the slices it covers whole and scans
//! only the rows of the slices at its edges: an hour's merge over an hour block it starts inside
//! reads one slice of rows, not the hour. The writer takes the finest width whose slices hold at
//! most [`MAX_SLICE_GROWTH`] times the entries of whole-block sums, in at most [`MAX_SLICES`]
//! slices; none when no width is that cheap.
//!
//! The encoding is a columnar protobuf message compressed with zstd, behind a magic and version,
//! like the symbols'. Deterministic: the same sums give the same bytes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use prost::Message;

use crate::filter::ScanFilter;
use crate::ids::Nanos;

const MAGIC: &[u8; 5] = b"FSUM1";
const ZSTD_LEVEL: i32 = 3;

/// A tenant's rows of a block get sums only if there are at least this many rows per sum.
pub const MIN_ROWS_PER_SUM: u64 = 4;

/// The widths sums may be sliced at, finest first, in seconds: each a multiple of the finest,
/// so every slice of a width holds whole slices of the finest.
const SLICE_WIDTHS_SECS: [i64; 10] = [300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/// A block's sums are cut into at most this many slices.
pub const MAX_SLICES: i64 = 48;

/// Slicing may multiply the entries of whole-block sums at most this many times.
pub const MAX_SLICE_GROWTH: u64 = 4;

/// One series' sums: values by the block's stack ordinal, ordinals rising.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesSums {
    pub profile_type: String,
    pub delta: bool,
    /// The labels its rows carry (a label they lack is absent).
    pub labels: BTreeMap<String, String>,
    /// Grouped by slice, ordinals rising within each.
    pub ordinals: Vec<u32>,
    pub values: Vec<i64>,
    /// Where each slice's entries end in `ordinals` (every slice of the tenant's, empty or
    /// not); empty when the sums are not sliced.
    pub slice_ends: Vec<u32>,
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

    /// The ordinals and values of `slices` (of the tenant's slices; `0..1` when not sliced).
    pub fn entries(&self, slices: Range<usize>) -> (&[u32], &[i64]) {
        if self.slice_ends.is_empty() {
            return (&self.ordinals, &self.values);
        }
        let end = |slice: usize| match slice.checked_sub(1) {
            None => 0,
            Some(s) => self
                .slice_ends
                .get(s)
                .map_or(self.ordinals.len(), |&e| e as usize),
        };
        let range = end(slices.start)..end(slices.end);
        (&self.ordinals[range.clone()], &self.values[range])
    }
}

/// A tenant's sums in one block, series in (profile type, delta, labels) order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantSums {
    pub series: Vec<SeriesSums>,
    /// The width of the slices, 0 when not sliced. Slice `k` holds the rows in
    /// `[(first_slice + k) * slice_nanos, (first_slice + k + 1) * slice_nanos)`.
    pub slice_nanos: i64,
    pub first_slice: i64,
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
        let slices: usize = self.series.iter().map(|s| s.slice_ends.len()).sum();
        12 * self.entries() + 4 * slices + labels + 96 * self.series.len()
    }
}

/// A series as the builder keys it: profile type, delta and labels (name, value), in order.
type SeriesKey = (String, bool, Vec<(String, String)>);

/// Sums a tenant's rows into series and finest slices as they are added; what the block
/// writer feeds.
#[derive(Debug, Default)]
pub struct SumsBuilder {
    /// By series, then finest slice (index on the grid of the finest width).
    series: BTreeMap<SeriesKey, BTreeMap<i64, HashMap<u32, i64>>>,
    rows: u64,
}

impl SumsBuilder {
    /// The sums of the series and finest slice a profile row at `time` belongs to; its samples
    /// are then added to the returned map (by ordinal).
    pub fn series(
        &mut self,
        profile_type: &str,
        delta: bool,
        labels: Vec<(String, String)>,
        time: Nanos,
    ) -> &mut HashMap<u32, i64> {
        self.series
            .entry((profile_type.to_owned(), delta, labels))
            .or_default()
            .entry(time.0.div_euclid(SLICE_WIDTHS_SECS[0] * NANOS_PER_SEC))
            .or_default()
    }

    /// Counts sample rows (the denominator of [`MIN_ROWS_PER_SUM`]).
    pub fn add_rows(&mut self, rows: u64) {
        self.rows += rows;
    }

    /// Entries of the sums sliced `factor` finest slices wide (`None`: not sliced), and the
    /// number of slices.
    fn entries(&self, factor: Option<i64>) -> (u64, i64) {
        let slice = |fine: i64| factor.map_or(0, |f| fine.div_euclid(f));
        let mut entries = 0u64;
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        let mut seen: HashSet<(i64, u32)> = HashSet::new();
        for fine in self.series.values() {
            seen.clear();
            for (&f, sums) in fine {
                let s = slice(f);
                (first, last) = (first.min(s), last.max(s));
                seen.extend(sums.keys().map(|&o| (s, o)));
            }
            entries += seen.len() as u64;
        }
        (entries, last.saturating_sub(first).saturating_add(1))
    }

    /// The sums, or `None` when they would not be [`MIN_ROWS_PER_SUM`] times fewer than the
    /// rows; sliced at the finest width that is cheap enough (see the module's notes).
    pub fn finish(self) -> Option<TenantSums> {
        let (whole, _) = self.entries(None);
        if whole == 0 || whole.saturating_mul(MIN_ROWS_PER_SUM) > self.rows {
            return None;
        }
        let factor = SLICE_WIDTHS_SECS
            .iter()
            .map(|w| w / SLICE_WIDTHS_SECS[0])
            .find(|&f| {
                let (entries, slices) = self.entries(Some(f));
                (2..=MAX_SLICES).contains(&slices)
                    && entries <= whole.saturating_mul(MAX_SLICE_GROWTH)
                    && entries.saturating_mul(MIN_ROWS_PER_SUM) <= self.rows
            });
        let slice = |fine: i64| factor.map_or(0, |f| fine.div_euclid(f));
        // Each series' fine slices are in order: its first and last bound the tenant's.
        let (first_slice, last_slice) = self
            .series
            .values()
            .filter_map(|fine| Some((*fine.keys().next()?, *fine.keys().next_back()?)))
            .fold((i64::MAX, i64::MIN), |(lo, hi), (a, b)| {
                (lo.min(slice(a)), hi.max(slice(b)))
            });
        let series = self
            .series
            .into_iter()
            .map(|((profile_type, delta, labels), fine)| {
                let mut by_slice: BTreeMap<i64, HashMap<u32, i64>> = BTreeMap::new();
                for (f, sums) in fine {
                    let merged = by_slice.entry(slice(f)).or_default();
                    for (ordinal, value) in sums {
                        let sum = merged.entry(ordinal).or_default();
                        *sum = sum.saturating_add(value);
                    }
                }
                let mut out = SeriesSums {
                    profile_type,
                    delta,
                    labels: labels.into_iter().collect(),
                    ..Default::default()
                };
                for s in first_slice..=last_slice {
                    let mut sums: Vec<(u32, i64)> = by_slice
                        .remove(&s)
                        .map(|m| m.into_iter().collect())
                        .unwrap_or_default();
                    sums.sort_unstable();
                    out.ordinals.extend(sums.iter().map(|e| e.0));
                    out.values.extend(sums.iter().map(|e| e.1));
                    if factor.is_some() {
                        out.slice_ends.push(out.ordinals.len() as u32);
                    }
                }
                out
            })
            .collect();
        Some(TenantSums {
            series,
            slice_nanos: factor.map_or(0, |f| f * SLICE_WIDTHS_SECS[0] * NANOS_PER_SEC),
            first_slice: if factor.is_some() { first_slice } else { 0 },
        })
    }
}

const NANOS_PER_SEC: i64 = 1_000_000_000;

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
    /// 0 when not sliced; then the next two are empty.
    #[prost(int64, tag = "10")]
    slice_nanos: i64,
    #[prost(int64, tag = "11")]
    first_slice: i64,
    /// Each series' entries in each slice, series by series.
    #[prost(uint32, repeated, tag = "12")]
    slice_entry_count: Vec<u32>,
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
        // Ordinals rise within a slice; each slice's first is written as itself.
        let mut starts: Vec<usize> = vec![0];
        starts.extend(series.slice_ends.iter().map(|&e| e as usize));
        let mut previous = 0;
        for (i, (&ordinal, &value)) in series.ordinals.iter().zip(&series.values).enumerate() {
            if starts.binary_search(&i).is_ok() {
                previous = 0;
            }
            file.ordinal_step.push(ordinal - previous);
            file.value.push(value);
            previous = ordinal;
        }
        let mut start = 0;
        for &end in &series.slice_ends {
            file.slice_entry_count.push(end - start);
            start = end;
        }
    }
    file.slice_nanos = sums.slice_nanos;
    file.first_slice = sums.first_slice;
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
    if file.slice_nanos < 0 || (file.slice_nanos == 0) != file.slice_entry_count.is_empty() {
        return Err(format!(
            "slices {} nanoseconds wide, with {} counts",
            file.slice_nanos,
            file.slice_entry_count.len()
        ));
    }
    let slices = match n {
        0 => 0,
        n => file.slice_entry_count.len() / n,
    };
    if slices * n != file.slice_entry_count.len() {
        return Err(format!(
            "{} slice counts for {n} series",
            file.slice_entry_count.len()
        ));
    }
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
        let mut slice_ends = Vec::with_capacity(slices);
        let mut end = 0u32;
        for &count in &file.slice_entry_count[s * slices..(s + 1) * slices] {
            end = end
                .checked_add(count)
                .ok_or_else(|| format!("series {s}: slices past 2^32 entries"))?;
            slice_ends.push(end);
        }
        if slices > 0 && end as usize != entries_end - entry {
            return Err(format!(
                "series {s}: slices of {end} entries, not {}",
                entries_end - entry
            ));
        }
        let mut ordinals = Vec::with_capacity(entries_end - entry);
        let mut previous = 0u32;
        for (i, &step) in file.ordinal_step[entry..entries_end].iter().enumerate() {
            if i == 0 || slice_ends.binary_search(&(i as u32)).is_ok() {
                previous = 0;
            }
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
            slice_ends,
        });
        (label, entry) = (labels_end, entries_end);
    }
    if label != file.label_name.len() || entry != file.value.len() {
        return Err("columns longer than their series".into());
    }
    Ok(TenantSums {
        series,
        slice_nanos: file.slice_nanos,
        first_slice: file.first_slice,
    })
}

#[cfg(test)]
mod tests;
