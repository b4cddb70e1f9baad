//! Blocks: the buffer's rows written once to object storage as Parquet, sorted by (tenant,
//! profile type, service_name, series, time, stack), with the symbols those rows use beside
//! them. [`BlockMeta`] describes a block well enough that a query skips it without opening it:
//! per-tenant row-group ranges (no tenant ever reads another's row groups), time range, profile
//! types, and label names and values.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::chunk::{Chunk, SampleRef, StackColumn, gather};
use crate::error::{Error, Result};
use crate::filter::ScanFilter;
use crate::ids::{BlockId, Nanos, SeqNo, TenantId};
use crate::schema;
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

    /// True when every row of this tenant in the block passes `filter`, so a scan need not
    /// evaluate it row by row.
    pub fn all_match(&self, filter: &ScanFilter) -> bool {
        filter.time.start <= self.min_time
            && self.max_time < filter.time.end
            && self
                .profile_types
                .iter()
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
    pub symbols_bytes: u64,
    pub tenants: BTreeMap<TenantId, TenantBlockMeta>,
}

impl BlockMeta {
    pub fn bytes(&self) -> u64 {
        self.samples_bytes + self.symbols_bytes
    }
}

/// A block ready to upload.
#[derive(Debug)]
pub struct EncodedBlock {
    pub meta: BlockMeta,
    pub samples: bytes::Bytes,
    pub symbols: bytes::Bytes,
}

fn writer_properties(options: &BlockOptions) -> Result<WriterProperties> {
    let zstd = ZstdLevel::try_new(options.zstd_level).map_err(|source| Error::EncodeBlock {
        block: BlockId::from_raw("options").expect("constant id is valid"),
        source,
    })?;
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_max_row_group_row_count(Some(options.row_group_rows))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_enabled(true)
        .set_column_dictionary_enabled(ColumnPath::from(schema::TIME), false)
        .set_column_encoding(
            ColumnPath::from(schema::TIME),
            Encoding::DELTA_BINARY_PACKED,
        )
        // Stack ordinals: plain, then zstd. A profile's run of rising ordinals restarts low at
        // the next profile, and that drop widens every delta-packed miniblock around it; zstd
        // over the plain values finds the repeats instead (0.6 bytes a row against 1.15 on the
        // long-range workload's day blocks).
        .set_column_dictionary_enabled(ColumnPath::from(schema::STACK), false)
        .set_column_encoding(ColumnPath::from(schema::STACK), Encoding::PLAIN)
        .set_column_dictionary_enabled(ColumnPath::from(schema::SERIES_ID), false)
        .set_column_encoding(
            ColumnPath::from(schema::SERIES_ID),
            Encoding::DELTA_BINARY_PACKED,
        )
        .set_created_by("firn".to_owned())
        .build())
}

/// Writes the given chunks (all with `seq` in `first..=last`) as one block. A pure function of
/// its input: the same chunks and symbols give the same bytes.
pub fn encode_block(
    id: BlockId,
    chunks: &[Arc<Chunk>],
    symbols: &SymbolTable,
    options: &BlockOptions,
) -> Result<EncodedBlock> {
    let encode_err = |source| Error::EncodeBlock {
        block: id.clone(),
        source,
    };
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

    let writer = ArrowWriter::try_new(
        Vec::new(),
        schema.clone(),
        Some(writer_properties(options)?),
    )
    .map_err(encode_err)?;
    let mut out = RowWriter {
        writer,
        chunks: chunks.iter().map(|c| c.as_ref()).collect(),
        pending: Vec::with_capacity(options.batch_rows),
        batch_rows: options.batch_rows,
        schema,
        ordinals: &ordinals,
        id: &id,
    };
    let mut tenants: BTreeMap<TenantId, TenantBlockMeta> = BTreeMap::new();
    let mut current: Option<TenantId> = None;
    let mut current_type: Option<String> = None;
    let mut total_rows = 0u64;
    for &(c, r) in &rows {
        let chunk = &chunks[c];
        if current.as_ref() != Some(&chunk.tenant) {
            // A tenant boundary ends the row group, so per-tenant row-group ranges are exact.
            let start = out.end_row_group()?;
            if let Some(previous) = current.take() {
                close_tenant(&mut tenants, &previous, start);
            }
            tenants.insert(
                chunk.tenant.clone(),
                TenantBlockMeta {
                    row_groups: (start, start),
                    rows: 0,
                    min_time: Nanos::MAX,
                    max_time: Nanos::MIN,
                    profile_types: BTreeSet::new(),
                    deltas: BTreeSet::new(),
                    periods: BTreeMap::new(),
                    labels: BTreeMap::new(),
                },
            );
            current = Some(chunk.tenant.clone());
            current_type = None;
        }
        let profile_type = chunk.string_value(schema::PROFILE_TYPE, r);
        if current_type.as_deref() != profile_type {
            // So does a profile type's: a query of one type skips the others' row groups, and
            // a type's bytes are its row groups'.
            if current_type.is_some() {
                out.end_row_group()?;
            }
            current_type = profile_type.map(str::to_owned);
        }
        let meta = tenants
            .get_mut(&chunk.tenant)
            .expect("tenant entry inserted at its first row");
        let time = Nanos(chunk.i64_value(schema::TIME, r));
        meta.min_time = meta.min_time.min(time);
        meta.max_time = meta.max_time.max(time);
        if let Some(pt) = profile_type {
            meta.profile_types.insert(pt.to_owned());
            let period = chunk.i64_value(schema::PERIOD, r);
            let max = meta.periods.entry(pt.to_owned()).or_insert(period);
            *max = (*max).max(period);
        }
        meta.deltas.insert(chunk.bool_value(schema::DELTA, r));
        let samples_in_row = chunk.sample_range(r).len() as u64;
        for name in chunk.labels.keys() {
            if let Some(value) = chunk.string_value(&schema::label_column(name), r) {
                let entry = meta
                    .labels
                    .entry(name.clone())
                    .or_insert_with(|| LabelValues {
                        values: Some(BTreeSet::new()),
                        rows: 0,
                    });
                entry.rows += samples_in_row;
                if let Some(values) = &mut entry.values {
                    values.insert(value.to_owned());
                    if values.len() > options.max_label_values {
                        entry.values = None;
                    }
                }
            }
        }
        // Samples of a row in ordinal order: ordinals rise within a profile.
        let refs = chunk.stack_refs();
        let mut samples: Vec<usize> = chunk.sample_range(r).collect();
        samples.sort_by_key(|&s| ordinals[refs.value(s) as usize]);
        meta.rows += samples.len() as u64;
        total_rows += samples.len() as u64;
        for sample in samples {
            out.push(SampleRef {
                chunk: c,
                row: r,
                sample,
            })?;
        }
    }
    let row_groups = out.end_row_group()?;
    if let Some(previous) = current.take() {
        close_tenant(&mut tenants, &previous, row_groups);
    }
    let samples = bytes::Bytes::from(out.writer.into_inner().map_err(encode_err)?);
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
        symbols_bytes: symbols_bytes.len() as u64,
        tenants,
    };
    Ok(EncodedBlock {
        meta,
        samples,
        symbols: symbols_bytes,
    })
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

fn close_tenant(tenants: &mut BTreeMap<TenantId, TenantBlockMeta>, tenant: &TenantId, end: usize) {
    if let Some(meta) = tenants.get_mut(tenant) {
        meta.row_groups.1 = end;
    }
}

/// Gathers sample references into batches and writes them.
struct RowWriter<'a> {
    writer: ArrowWriter<Vec<u8>>,
    chunks: Vec<&'a Chunk>,
    pending: Vec<SampleRef>,
    batch_rows: usize,
    schema: arrow::datatypes::SchemaRef,
    ordinals: &'a [i32],
    id: &'a BlockId,
}

impl RowWriter<'_> {
    fn push(&mut self, sample: SampleRef) -> Result<()> {
        self.pending.push(sample);
        if self.pending.len() >= self.batch_rows {
            self.write_pending()?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = gather(
            &self.chunks,
            &self.pending,
            &self.schema,
            StackColumn::Ordinals(self.ordinals),
        )?;
        self.writer
            .write(&batch)
            .map_err(|source| self.encode_err(source))?;
        self.pending.clear();
        Ok(())
    }

    /// Writes what is pending and closes the row group; returns the row groups written.
    fn end_row_group(&mut self) -> Result<usize> {
        self.write_pending()?;
        self.writer
            .flush()
            .map_err(|source| self.encode_err(source))?;
        Ok(self.writer.flushed_row_groups().len())
    }

    fn encode_err(&self, source: parquet::errors::ParquetError) -> Error {
        Error::EncodeBlock {
            block: self.id.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{LabelMatcher, MatchOp};

    fn meta() -> TenantBlockMeta {
        TenantBlockMeta {
            row_groups: (0, 1),
            rows: 10,
            min_time: Nanos(100),
            max_time: Nanos(200),
            profile_types: BTreeSet::from(["cpu".to_owned()]),
            deltas: BTreeSet::from([true]),
            periods: BTreeMap::from([("cpu".to_owned(), 10)]),
            labels: BTreeMap::from([
                (
                    "pod".to_owned(),
                    LabelValues {
                        values: Some(BTreeSet::from(["p1".to_owned()])),
                        rows: 10,
                    },
                ),
                (
                    "region".to_owned(),
                    LabelValues {
                        values: Some(BTreeSet::from(["eu".to_owned()])),
                        rows: 4,
                    },
                ),
            ]),
        }
    }

    fn with(f: impl FnOnce(&mut ScanFilter)) -> ScanFilter {
        let mut filter = ScanFilter::default();
        f(&mut filter);
        filter
    }

    fn label(name: &str, op: MatchOp, value: &str) -> LabelMatcher {
        LabelMatcher::new(name, op, value).expect("valid matcher")
    }

    #[test]
    fn all_match_needs_proof_for_every_part_of_the_filter() {
        let m = meta();
        assert!(m.all_match(&ScanFilter::default()));
        assert!(m.all_match(&with(|f| f.time = Nanos(100)..Nanos(201))));
        assert!(
            !m.all_match(&with(|f| f.time = Nanos(100)..Nanos(200))),
            "the row at 200 is outside a range ending at 200"
        );
        assert!(!m.all_match(&with(|f| f.time = Nanos(101)..Nanos(300))));
        assert!(m.all_match(&with(
            |f| f.profile_types = Some(BTreeSet::from(["cpu".into()]))
        )));
        assert!(!m.all_match(&with(|f| f.profile_types = Some(BTreeSet::new()))));
        assert!(m.all_match(&with(|f| f.delta = Some(true))));
        assert!(!m.all_match(&with(|f| f.delta = Some(false))));
        assert!(m.all_match(&with(|f| f.labels = vec![label("pod", MatchOp::Eq, "p1")])));
        assert!(!m.all_match(&with(|f| f.labels = vec![label("pod", MatchOp::Eq, "p2")])));
        assert!(
            !m.all_match(&with(
                |f| f.labels = vec![label("region", MatchOp::Eq, "eu")]
            )),
            "six rows lack the region label"
        );
        assert!(m.all_match(&with(
            |f| f.labels = vec![label("region", MatchOp::NotEq, "us")]
        )));
        assert!(m.all_match(&with(
            |f| f.labels = vec![label("zone", MatchOp::NotEq, "a")]
        )));
        assert!(!m.all_match(&with(|f| f.labels = vec![label("zone", MatchOp::Eq, "a")])));
        let mut unknown = meta();
        unknown.labels.get_mut("pod").expect("pod").values = None;
        assert!(!unknown.all_match(&with(|f| f.labels = vec![label("pod", MatchOp::Eq, "p1")])));
        unknown.deltas.clear();
        assert!(
            !unknown.all_match(&with(|f| f.delta = Some(true))),
            "older blocks without recorded deltas prove nothing"
        );
    }
}
