//! Writing a block's sorted sample rows as Parquet, with the stack column as
//! [`crate::stack_codec`] lays it out, and checking that every page starts on a restart.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{AsArray, Int32Array};
use arrow::datatypes::{Int32Type, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};

use super::{LabelValues, TenantBlockMeta, writer_properties};
use crate::chunk::{Chunk, SampleRef, StackColumn, gather};
use crate::error::{Error, Result};
use crate::ids::{BlockId, Nanos, TenantId};
use crate::schema;
use crate::stack_codec::{RESTART_ROWS, StackEncoding, encode_gap};

/// Where the stack column restarts: how it is encoded and, for gaps, the rows (counted from
/// the file's first) that restart besides every [`RESTART_ROWS`]-th of a row group.
pub(super) struct Layout {
    pub encoding: StackEncoding,
    pub extra: BTreeSet<u64>,
}

/// What writing the rows produced.
pub(super) struct Written {
    pub samples: bytes::Bytes,
    pub tenants: BTreeMap<TenantId, TenantBlockMeta>,
    pub row_groups: usize,
    pub total_rows: u64,
}

/// Writes `rows` (sorted profile rows, as chunk and row) with their samples in ordinal order,
/// one row group per tenant and profile type at least, and gathers each tenant's metadata.
pub(super) fn write_rows(
    chunks: &[&Chunk],
    rows: &[(usize, usize)],
    ordinals: &[i32],
    schema: &SchemaRef,
    options: &super::BlockOptions,
    id: &BlockId,
    layout: &Layout,
) -> Result<Written> {
    let encode_err = |source| Error::EncodeBlock {
        block: id.clone(),
        source,
    };
    let writer = ArrowWriter::try_new(
        Vec::new(),
        schema.clone(),
        Some(writer_properties(options, layout.encoding)?),
    )
    .map_err(encode_err)?;
    let batch_rows = options.batch_rows.max(1).next_multiple_of(RESTART_ROWS);
    let mut out = RowWriter {
        writer,
        chunks,
        pending: Vec::with_capacity(batch_rows),
        batch_rows,
        schema: schema.clone(),
        stack_index: schema.index_of(schema::STACK).ok(),
        ordinals,
        layout,
        written: 0,
        group_start: 0,
        last: None,
        id,
    };
    let mut tenants: BTreeMap<TenantId, TenantBlockMeta> = BTreeMap::new();
    let mut current: Option<TenantId> = None;
    let mut current_type: Option<String> = None;
    let mut total_rows = 0u64;
    for &(c, r) in rows {
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
                    sums: None,
                    sums_slice_nanos: 0,
                    type_row_groups: BTreeMap::new(),
                    generation: 0,
                },
            );
            current = Some(chunk.tenant.clone());
            current_type = None;
        }
        let meta = tenants
            .get_mut(&chunk.tenant)
            .expect("tenant entry inserted at its first row");
        let profile_type = chunk.string_value(schema::PROFILE_TYPE, r);
        if current_type.as_deref() != profile_type {
            // So does a profile type's: a query of one type skips the others' row groups, and
            // a type's bytes are its row groups'.
            let start = match &current_type {
                Some(previous) => {
                    let start = out.end_row_group()?;
                    if let Some(range) = meta.type_row_groups.get_mut(previous) {
                        range.1 = start;
                    }
                    start
                }
                None => meta.row_groups.0,
            };
            current_type = profile_type.map(str::to_owned);
            if let Some(pt) = &current_type {
                meta.type_row_groups.insert(pt.clone(), (start, usize::MAX));
            }
        }
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
    Ok(Written {
        samples: bytes::Bytes::from(out.writer.into_inner().map_err(encode_err)?),
        tenants,
        row_groups,
        total_rows,
    })
}

/// Pages of `samples` (a written block) that start on a row the stack column does not restart
/// at, as rows counted from the file's first; empty when every page of every column starts on
/// a restart, so that a scan skipping pages by the page index decodes the stack column alone.
pub(super) fn unaligned_pages(samples: &bytes::Bytes, layout: &Layout) -> Result<BTreeSet<u64>> {
    let metadata = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Required)
        .parse_and_finish(samples)
        .map_err(|e| Error::CorruptWrite {
            reason: format!("a block just written has no readable page index: {e}"),
        })?;
    let mut unaligned = BTreeSet::new();
    let Some(offsets) = metadata.offset_index() else {
        return Ok(unaligned);
    };
    let mut group_start = 0u64;
    for (group, columns) in metadata.row_groups().iter().zip(offsets) {
        for column in columns {
            for page in column.page_locations() {
                let relative = page.first_row_index as u64;
                let row = group_start + relative;
                if !relative.is_multiple_of(RESTART_ROWS as u64) && !layout.extra.contains(&row) {
                    unaligned.insert(row);
                }
            }
        }
        group_start += group.num_rows() as u64;
    }
    Ok(unaligned)
}

fn close_tenant(tenants: &mut BTreeMap<TenantId, TenantBlockMeta>, tenant: &TenantId, end: usize) {
    if let Some(meta) = tenants.get_mut(tenant) {
        meta.row_groups.1 = end;
        // The last type's row groups run to the tenant's end.
        for range in meta.type_row_groups.values_mut() {
            range.1 = range.1.min(end);
        }
    }
}

/// Gathers sample references into batches and writes them.
struct RowWriter<'a> {
    writer: ArrowWriter<Vec<u8>>,
    chunks: &'a [&'a Chunk],
    pending: Vec<SampleRef>,
    /// A multiple of [`RESTART_ROWS`], so pages end on restarts.
    batch_rows: usize,
    schema: SchemaRef,
    stack_index: Option<usize>,
    ordinals: &'a [i32],
    layout: &'a Layout,
    /// Rows written so far, and the first row of the row group being written.
    written: u64,
    group_start: u64,
    /// The profile (chunk, row) and ordinal of the last sample written.
    last: Option<((usize, usize), i32)>,
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
        let mut batch = gather(
            self.chunks,
            &self.pending,
            &self.schema,
            StackColumn::Ordinals(self.ordinals),
        )?;
        if let (StackEncoding::Gaps, Some(i)) = (self.layout.encoding, self.stack_index) {
            let ordinals = batch.column(i).as_primitive::<Int32Type>().clone();
            let mut stored = Vec::with_capacity(ordinals.len());
            for (sample, &ordinal) in self.pending.iter().zip(ordinals.values()) {
                let row = self.written + stored.len() as u64;
                let profile = (sample.chunk, sample.row);
                let restart = (row - self.group_start).is_multiple_of(RESTART_ROWS as u64)
                    || self.layout.extra.contains(&row);
                let previous = match self.last {
                    Some((p, o)) if p == profile && !restart => Some(o),
                    _ => None,
                };
                stored.push(encode_gap(ordinal, previous));
                self.last = Some((profile, ordinal));
            }
            let mut columns = batch.columns().to_vec();
            columns[i] = std::sync::Arc::new(Int32Array::from(stored));
            batch = arrow::array::RecordBatch::try_new(self.schema.clone(), columns).map_err(
                |source| Error::Arrow {
                    what: "a block's stack steps",
                    source,
                },
            )?;
        }
        self.written += self.pending.len() as u64;
        self.writer
            .write(&batch)
            .map_err(|source| self.encode_err(source))?;
        self.pending.clear();
        Ok(())
    }

    /// Writes what is pending and closes the row group; returns the row groups written.
    fn end_row_group(&mut self) -> Result<usize> {
        self.write_pending()?;
        self.group_start = self.written;
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
