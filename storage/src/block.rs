//! Blocks: the buffer's rows written once to object storage as Parquet, sorted by (tenant,
//! profile type, service_name, series, time, stack), with the symbols those rows use beside
//! them. [`BlockMeta`] describes a block well enough that a query skips it without opening it:
//! per-tenant row-group ranges (no tenant ever reads another's row groups), time range, profile
//! types, and label names and values.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::filter::ScanFilter;
use crate::ids::{BlockId, Nanos, SeqNo, TenantId};
use crate::schema;
use crate::stack_codec::{RESTART_ROWS, StackEncoding};
use crate::sums::{SumsBuilder, TenantSums, encode_sums};
use crate::symbols::{SymbolTable, encode_symbols};

/// How blocks are laid out.
#[derive(Clone, Copy, Debug)]
pub struct BlockOptions {
    /// Rows per row group at most; a tenant's rows never share a row group with another's.
    pub row_group_rows: usize,
    /// Rows per output batch while writing (bounds the writer's memory).
    pub batch_rows: usize,
    /// Distinct values of one label recorded in block metadata; past it the label is recorded
    /// as present with unknown values (no pruning on it).
    pub max_label_values: usize,
    pub zstd_level: i32,
}

impl Default for BlockOptions {
    fn default() -> Self {
        Self {
            row_group_rows: 128 * 1024,
            batch_rows: 64 * 1024,
            max_label_values: 256,
            zstd_level: 3,
        }
    }
}

/// The values a label takes in a block, when few enough to list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelValues {
    /// `None` when there were more than [`BlockOptions::max_label_values`].
    pub values: Option<BTreeSet<String>>,
    /// Sample rows that carry the label (the others lack it).
    #[serde(default)]
    pub rows: u64,
}

/// What one tenant has in a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantBlockMeta {
    /// Half-open range of row-group indices holding this tenant's rows, and only them.
    pub row_groups: (usize, usize),
    pub rows: u64,
    pub min_time: Nanos,
    pub max_time: Nanos,
    pub profile_types: BTreeSet<String>,
    /// The `delta` values present (empty in blocks written before it was recorded).
    #[serde(default)]
    pub deltas: BTreeSet<bool>,
    /// The largest sampling period of each profile type, so a merge need not read the column.
    #[serde(default)]
    pub periods: BTreeMap<String, i64>,
    pub labels: BTreeMap<String, LabelValues>,
    /// Where this tenant's [`crate::sums`] lie in the block object, when it has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sums: Option<ByteRange>,
    /// The width of the slices the sums are cut into, 0 when they are not.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sums_slice_nanos: i64,
    /// Each profile type's half-open range of row groups (within `row_groups`); empty in
    /// blocks written before it was recorded, whose every row group may hold any type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub type_row_groups: BTreeMap<String, (usize, usize)>,
    /// Compactions these rows have been through: 0 in a flush's block, in a compaction's one
    /// more than its most compacted input's.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub generation: u32,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// What a block's stack sums answer of a time range: the slices of them that hold only rows
/// in the range, and the time those rows lie in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummedPart {
    /// Indices into the tenant's slices (`0..1` when the sums are not sliced).
    pub slices: std::ops::Range<usize>,
    /// Every row of the tenant in the block in this range is summed by `slices`, and no other.
    pub time: std::ops::Range<Nanos>,
    /// True when that is every row of the tenant in the block.
    pub whole: bool,
}

/// A byte range of a block object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    pub offset: u64,
    pub len: u64,
}

impl ByteRange {
    pub fn range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset.saturating_add(self.len)
    }
}

impl TenantBlockMeta {
    /// False when no row of this tenant in the block can pass `filter`.
    pub fn may_match(&self, filter: &ScanFilter) -> bool {
        filter.overlaps_time(self.min_time, self.max_time)
            && self
                .profile_types
                .iter()
                .any(|p| filter.keeps_profile_type(p))
            && filter
                .labels
                .iter()
                .all(|m| match self.labels.get(&m.name) {
                    None => m.matches(None),
                    Some(LabelValues { values: None, .. }) => true,
                    // A label may be absent on some rows of the block: they match as "".
                    Some(LabelValues {
                        values: Some(values),
                        ..
                    }) => m.may_match(values, true),
                })
    }

    /// The largest sampling period among the profile types `filter` keeps.
    pub fn max_period(&self, filter: &ScanFilter) -> i64 {
        self.periods
            .iter()
            .filter(|(pt, _)| filter.keeps_profile_type(pt))
            .map(|(_, &p)| p)
            .max()
            .unwrap_or(0)
    }

    /// True when every row of this tenant in the block lies in `filter`'s time range.
    pub fn within_time(&self, filter: &ScanFilter) -> bool {
        filter.time.start <= self.min_time && self.max_time < filter.time.end
    }

    /// The part of this tenant's rows in the block its stack sums answer for `time`: all of
    /// them when the block lies inside it, else the slices the range covers whole; `None`
    /// when there are no sums, or no slice lies inside the range.
    pub fn summed_part(&self, time: &std::ops::Range<Nanos>) -> Option<SummedPart> {
        self.sums?;
        let rows = self.min_time.0..self.max_time.0.saturating_add(1);
        let inside = |r: &std::ops::Range<i64>| time.start.0 <= r.start && r.end <= time.end.0;
        let w = self.sums_slice_nanos;
        if w <= 0 {
            return inside(&rows).then_some(SummedPart {
                slices: 0..1,
                time: Nanos(rows.start)..Nanos(rows.end),
                whole: true,
            });
        }
        let (first, last) = (rows.start.div_euclid(w), (rows.end - 1).div_euclid(w));
        // Slice k holds the rows in [max(k w, rows.start), min((k + 1) w, rows.end)).
        let lo = if rows.start >= time.start.0 {
            first
        } else {
            let s = time.start.0;
            first.max(s.div_euclid(w) + i64::from(s.rem_euclid(w) != 0))
        };
        let hi = if rows.end <= time.end.0 {
            last + 1
        } else {
            (last + 1).min(time.end.0.div_euclid(w))
        };
        if lo >= hi {
            return None;
        }
        let span = (lo * w).max(rows.start)..(hi * w).min(rows.end);
        debug_assert!(inside(&span));
        Some(SummedPart {
            slices: (lo - first) as usize..(hi - first) as usize,
            time: Nanos(span.start)..Nanos(span.end),
            whole: lo == first && hi == last + 1,
        })
    }

    /// The row groups of this tenant that may hold a profile type `filter` keeps, in order.
    pub fn row_groups_for(&self, filter: &ScanFilter) -> Vec<usize> {
        if self.type_row_groups.is_empty() {
            return (self.row_groups.0..self.row_groups.1).collect();
        }
        self.type_row_groups
            .iter()
            .filter(|(pt, _)| filter.keeps_profile_type(pt))
            .flat_map(|(_, &(start, end))| start..end)
            .collect()
    }

    /// True when every row of this tenant in the block passes `filter`, so a scan need not
    /// evaluate it row by row.
    pub fn all_match(&self, filter: &ScanFilter) -> bool {
        self.all_match_of(filter, |_| true)
    }

    /// [`Self::all_match`] for the rows of the profile types `scanned` keeps: a scan of the
    /// row groups of some types need not prove anything of the others.
    pub fn all_match_of(&self, filter: &ScanFilter, scanned: impl Fn(&str) -> bool) -> bool {
        self.within_time(filter)
            && self
                .profile_types
                .iter()
                .filter(|p| scanned(p))
                .all(|p| filter.keeps_profile_type(p))
            && filter
                .delta
                .is_none_or(|d| self.deltas == BTreeSet::from([d]))
            && filter
                .labels
                .iter()
                .all(|m| match self.labels.get(&m.name) {
                    None => m.matches(None),
                    Some(LabelValues { values: None, .. }) => false,
                    Some(LabelValues {
                        values: Some(values),
                        rows,
                    }) => {
                        (*rows == self.rows || m.matches(None))
                            && values.iter().all(|v| m.matches(Some(v)))
                    }
                })
    }
}

/// A block as the manifest records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub id: BlockId,
    pub first_seq: SeqNo,
    pub last_seq: SeqNo,
    pub min_time: Nanos,
    pub max_time: Nanos,
    pub rows: u64,
    /// Row groups in the Parquet file.
    pub row_groups: usize,
    pub samples_bytes: u64,
    /// Every tenant's stack sums, between the Parquet file and the symbols.
    #[serde(default)]
    pub sums_bytes: u64,
    pub symbols_bytes: u64,
    pub tenants: BTreeMap<TenantId, TenantBlockMeta>,
    /// How the `stack` column stores ordinals (plain in blocks written before steps).
    #[serde(default)]
    pub stack: StackEncoding,
}

impl BlockMeta {
    pub fn bytes(&self) -> u64 {
        self.samples_bytes + self.sums_bytes + self.symbols_bytes
    }
}

/// A block ready to upload.
#[derive(Debug)]
pub struct EncodedBlock {
    pub meta: BlockMeta,
    pub samples: bytes::Bytes,
    /// The tenants' stack sums, as their metadata places them right after `samples`.
    pub sums: bytes::Bytes,
    pub symbols: bytes::Bytes,
}

fn writer_properties(options: &BlockOptions, stack: StackEncoding) -> Result<WriterProperties> {
    let zstd = ZstdLevel::try_new(options.zstd_level).map_err(|source| Error::EncodeBlock {
        block: BlockId::from_raw("options").expect("constant id is valid"),
        source,
    })?;
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        // Pages end on restarts of the stack column: mini-batches (and so page boundaries) fall
        // every RESTART_ROWS rows of a write, writes and row groups are multiples of it, and
        // the row limit of a page (also a mini-batch size for columns without nulls) is too.
        .set_max_row_group_row_count(Some(
            options.row_group_rows.max(1).next_multiple_of(RESTART_ROWS),
        ))
        .set_write_batch_size(RESTART_ROWS)
        .set_data_page_row_count_limit(20 * RESTART_ROWS)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            STACK_ENCODING_KEY.to_owned(),
            Some(serde_json::to_string(&stack).expect("an enum serialises")),
        )]))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_enabled(true)
        .set_column_dictionary_enabled(ColumnPath::from(schema::TIME), false)
        .set_column_encoding(
            ColumnPath::from(schema::TIME),
            Encoding::DELTA_BINARY_PACKED,
        )
        // Stack steps (or ordinals): byte stream split, then zstd. Each profile starts with a
        // large negative restart, and that jump widens every delta-packed miniblock around it;
        // with the bytes of each value split into streams, zstd sees the low bytes together and
        // the near-constant high ones as runs (steps: 0.6 bytes a row against 0.9 for ordinals
        // and 1.2 for plain ordinals, on the long-range workload's CPU rows, by pyarrow).
        .set_column_dictionary_enabled(ColumnPath::from(schema::STACK), false)
        .set_column_encoding(ColumnPath::from(schema::STACK), Encoding::BYTE_STREAM_SPLIT)
        .set_created_by("firn".to_owned())
        .build())
}

/// The Parquet key-value metadata naming the stack column's [`StackEncoding`], so a block file
/// describes itself (the manifest records it too).
pub const STACK_ENCODING_KEY: &str = "firn.stack_encoding";

/// Writes the given chunks (all with `seq` in `first..=last`) as one block. A pure function of
/// its input: the same chunks and symbols give the same bytes.
pub fn encode_block(
    id: BlockId,
    chunks: &[Arc<Chunk>],
    symbols: &SymbolTable,
    options: &BlockOptions,
) -> Result<EncodedBlock> {
    let label_names: BTreeSet<&str> = chunks
        .iter()
        .flat_map(|c| c.labels.keys().map(String::as_str))
        .collect();
    let schema = schema::block_schema(label_names.iter().copied());

    // Sort profile rows by (tenant, profile type, service, series, time, write order).
    let mut rows: Vec<(usize, usize)> = chunks
        .iter()
        .enumerate()
        .flat_map(|(c, chunk)| (0..chunk.rows()).map(move |r| (c, r)))
        .collect();
    let service = schema::label_column(crate::labels::SERVICE_NAME);
    rows.sort_by(|&(ca, ra), &(cb, rb)| {
        let (a, b) = (&chunks[ca], &chunks[cb]);
        a.tenant
            .cmp(&b.tenant)
            .then_with(|| {
                a.string_value(schema::PROFILE_TYPE, ra)
                    .cmp(&b.string_value(schema::PROFILE_TYPE, rb))
            })
            .then_with(|| {
                a.string_value(&service, ra)
                    .cmp(&b.string_value(&service, rb))
            })
            .then_with(|| {
                a.u64_value(schema::SERIES_ID, ra)
                    .cmp(&b.u64_value(schema::SERIES_ID, rb))
            })
            .then_with(|| {
                a.i64_value(schema::TIME, ra)
                    .cmp(&b.i64_value(schema::TIME, rb))
            })
            .then_with(|| (ca, ra).cmp(&(cb, rb)))
    });

    // The block's symbols: every stack its rows use. Rows refer to a stack by its ordinal in
    // this table, and a profile's ordinals rise, so the column holds short rising runs: ordinals
    // are given service by service (in row order) and, within one, most-used first, which keeps
    // the steps of a run small. The order is a function of the rows (ties by stack id).
    let used = stacks_in_ordinal_order(chunks, &rows, symbols);
    let mut block_symbols = SymbolTable::new();
    let mut ordinals = vec![-1i32; symbols.stack_count()];
    for (&buffer_ref, ordinal) in used
        .iter()
        .zip(block_symbols.copy_stacks_from(symbols, used.iter().copied()))
    {
        ordinals[buffer_ref as usize] = i32::try_from(ordinal)
            .map_err(|_| Error::Internal("a block holds more than 2^31 stacks"))?;
    }

    // Stack steps first; when a page of some column starts off a restart (large values can
    // end a page inside a mini-batch), those rows become restarts too and the block is written
    // again: page boundaries depend on the other columns' values and on the stack column's row
    // count, neither of which changes, so the second pass lines up. Plain ordinals are the last
    // resort.
    let chunk_refs: Vec<&Chunk> = chunks.iter().map(|c| c.as_ref()).collect();
    let mut layout = rows::Layout {
        encoding: StackEncoding::Gaps,
        extra: BTreeSet::new(),
    };
    let written = loop {
        let written = rows::write_rows(
            &chunk_refs,
            &rows,
            &ordinals,
            &schema,
            options,
            &id,
            &layout,
        )?;
        if layout.encoding == StackEncoding::Ordinals {
            break written;
        }
        let unaligned = rows::unaligned_pages(&written.samples, &layout)?;
        if unaligned.is_empty() {
            break written;
        }
        if layout.extra.is_empty() {
            layout.extra = unaligned;
        } else {
            tracing::warn!(block = %id, pages = unaligned.len(), "block pages off stack restarts; writing plain ordinals");
            layout = rows::Layout {
                encoding: StackEncoding::Ordinals,
                extra: BTreeSet::new(),
            };
        }
    };
    let rows::Written {
        samples,
        mut tenants,
        row_groups,
        total_rows,
    } = written;
    let mut sums = Vec::new();
    for (tenant, tenant_sums) in stack_sums(chunks, &rows, &ordinals) {
        if let Some(meta) = tenants.get_mut(&tenant) {
            let encoded = encode_sums(&tenant_sums);
            meta.sums_slice_nanos = tenant_sums.slice_nanos;
            meta.sums = Some(ByteRange {
                offset: (samples.len() + sums.len()) as u64,
                len: encoded.len() as u64,
            });
            sums.extend(encoded);
        }
    }
    let symbols_bytes = bytes::Bytes::from(encode_symbols(&block_symbols));
    let meta = BlockMeta {
        id,
        first_seq: chunks.iter().map(|c| c.seq).min().unwrap_or_default(),
        last_seq: chunks.iter().map(|c| c.seq).max().unwrap_or_default(),
        min_time: tenants
            .values()
            .map(|t| t.min_time)
            .min()
            .unwrap_or_default(),
        max_time: tenants
            .values()
            .map(|t| t.max_time)
            .max()
            .unwrap_or_default(),
        rows: total_rows,
        row_groups,
        samples_bytes: samples.len() as u64,
        sums_bytes: sums.len() as u64,
        symbols_bytes: symbols_bytes.len() as u64,
        tenants,
        stack: layout.encoding,
    };
    Ok(EncodedBlock {
        meta,
        samples,
        sums: sums.into(),
        symbols: symbols_bytes,
    })
}

/// Each tenant's stack sums over `rows` (by block ordinal), for the tenants whose rows they
/// are [`crate::sums::MIN_ROWS_PER_SUM`] times fewer than.
fn stack_sums(
    chunks: &[Arc<Chunk>],
    rows: &[(usize, usize)],
    ordinals: &[i32],
) -> BTreeMap<TenantId, TenantSums> {
    let mut builders: BTreeMap<&TenantId, SumsBuilder> = BTreeMap::new();
    for &(c, r) in rows {
        let chunk = &chunks[c];
        let labels: Vec<(String, String)> = chunk
            .labels
            .keys()
            .filter_map(|name| {
                let value = chunk.string_value(&schema::label_column(name), r)?;
                Some((name.clone(), value.to_owned()))
            })
            .collect();
        let builder = builders.entry(&chunk.tenant).or_default();
        let samples = chunk.sample_range(r);
        builder.add_rows(samples.len() as u64);
        let series = builder.series(
            chunk
                .string_value(schema::PROFILE_TYPE, r)
                .unwrap_or_default(),
            chunk.bool_value(schema::DELTA, r),
            labels,
            Nanos(chunk.i64_value(schema::TIME, r)),
        );
        let refs = chunk.stack_refs();
        for s in samples {
            let ordinal = ordinals[refs.value(s) as usize] as u32;
            let sum = series.entry(ordinal).or_default();
            *sum = sum.saturating_add(chunk.value(s));
        }
    }
    builders
        .into_iter()
        .filter_map(|(tenant, b)| Some((tenant.clone(), b.finish()?)))
        .collect()
}

/// The buffer stack references `rows` use, in the block's ordinal order: by the first
/// (tenant, service) run of `rows` that uses the stack, then by use count, most first, then by
/// stack id.
fn stacks_in_ordinal_order(
    chunks: &[Arc<Chunk>],
    rows: &[(usize, usize)],
    symbols: &SymbolTable,
) -> Vec<u32> {
    let service = schema::label_column(crate::labels::SERVICE_NAME);
    let count = symbols.stack_count();
    let mut first_run = vec![u32::MAX; count];
    let mut uses = vec![0u64; count];
    let mut run = 0u32;
    let mut last: Option<(&TenantId, Option<&str>)> = None;
    for &(c, r) in rows {
        let chunk = &chunks[c];
        let key = (&chunk.tenant, chunk.string_value(&service, r));
        if last.is_some_and(|l| l != key) {
            run += 1;
        }
        last = Some(key);
        let refs = chunk.stack_refs();
        for s in chunk.sample_range(r) {
            let stack = refs.value(s) as usize;
            first_run[stack] = first_run[stack].min(run);
            uses[stack] += 1;
        }
    }
    let mut used: Vec<u32> = (0..count as u32)
        .filter(|&r| uses[r as usize] > 0)
        .collect();
    used.sort_by_key(|&r| {
        let i = r as usize;
        (
            first_run[i],
            std::cmp::Reverse(uses[i]),
            symbols.stack(r).id,
        )
    });
    used
}

mod rows;
#[cfg(test)]
mod tests;
