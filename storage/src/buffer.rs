//! The in-memory buffer: the unflushed writes of a store as Arrow chunks plus the symbol table
//! they refer to, bounded by a memory budget. Append-only between flushes; a flush hands a
//! [`BufferSnapshot`] to the block writer and later drops the chunks it covered.
//!
//! ```text
//!  write(seq, normalized) ──► budget check ──► intern symbols ──► Chunk (one RecordBatch)
//!                                                   │
//!  snapshot() ◄── Vec<Arc<Chunk>> + Arc<SymbolTable>┘  (queries and the block writer)
//!  drop_through(seq) ── removes flushed chunks, rebuilds the symbol table for the rest
//! ```

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::chunk::{Chunk, SampleRef, gather};
use crate::error::{Error, Result};
use crate::filter::ScanFilter;
use crate::ids::{Nanos, SeqNo, TenantId};
use crate::normalize::Normalized;
use crate::schema;
use crate::symbols::SymbolTable;

/// Estimated bytes a write will add, checked against the budget before anything changes.
fn estimate_bytes(normalized: &Normalized) -> usize {
    let samples = normalized.sample_count();
    let rows = normalized.profiles.len();
    let labels: usize = normalized.profiles.iter().map(|p| p.labels.len()).sum();
    let symbols: usize = normalized
        .symbols
        .strings
        .iter()
        .map(|s| s.len())
        .sum::<usize>()
        + normalized.symbols.locations.len() * 64
        + normalized
            .symbols
            .stacks
            .iter()
            .map(|s| 64 + 4 * s.locations.len())
            .sum::<usize>();
    let links: usize = normalized
        .profiles
        .iter()
        .flat_map(|p| [&p.links.trace_id, &p.links.span_id, &p.links.profile_id])
        .flatten()
        .flat_map(|column| column.iter().flatten())
        .map(|v| v.len() + 4)
        .sum();
    12 * samples + 64 * rows + 16 * labels + links + symbols / 4 + 4096
}

/// What a successful write added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub profiles: usize,
    pub samples: usize,
    pub bytes: usize,
}

/// The unflushed rows of a store.
#[derive(Debug)]
pub struct Buffer {
    chunks: Vec<Arc<Chunk>>,
    symbols: Arc<RwLock<SymbolTable>>,
    label_names: BTreeSet<String>,
    chunk_bytes: usize,
    budget: usize,
    last_seq: SeqNo,
}

impl Buffer {
    /// An empty buffer that holds at most `budget` bytes; `last_seq` is the last write already
    /// stored elsewhere (in blocks), so the next write must come after it.
    pub fn new(budget: usize, last_seq: SeqNo) -> Self {
        Self {
            chunks: Vec::new(),
            symbols: Arc::new(RwLock::new(SymbolTable::new())),
            label_names: BTreeSet::new(),
            chunk_bytes: 0,
            budget,
            last_seq,
        }
    }

    pub fn last_seq(&self) -> SeqNo {
        self.last_seq
    }

    /// Bytes held: chunks plus symbols.
    pub fn memory_bytes(&self) -> usize {
        self.chunk_bytes
            + self
                .symbols
                .read()
                .expect("symbol lock poisoned")
                .memory_bytes()
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn sample_count(&self) -> usize {
        self.chunks.iter().map(|c| c.samples).sum()
    }

    /// The oldest sequence number still buffered.
    pub fn first_seq(&self) -> Option<SeqNo> {
        self.chunks.first().map(|c| c.seq)
    }

    /// Appends a write. Refuses, changing nothing, when the sequence number does not increase or
    /// the write would take the buffer past its budget.
    pub fn apply(&mut self, seq: SeqNo, normalized: &Normalized) -> Result<WriteStats> {
        if seq <= self.last_seq {
            return Err(Error::SequenceNotIncreasing {
                seq,
                last: self.last_seq,
            });
        }
        let needed = estimate_bytes(normalized);
        let used = self.memory_bytes();
        if used.saturating_add(needed) > self.budget {
            return Err(Error::BufferFull {
                needed,
                used,
                budget: self.budget,
            });
        }
        if normalized.profiles.is_empty() {
            self.last_seq = seq;
            return Ok(WriteStats::default());
        }
        let refs = self
            .symbols
            .write()
            .expect("symbol lock poisoned")
            .intern(&normalized.symbols);
        let chunk = Chunk::build(seq, normalized.tenant.clone(), &normalized.profiles, &refs)?;
        self.last_seq = seq;
        let stats = WriteStats {
            profiles: chunk.rows(),
            samples: chunk.samples,
            bytes: chunk.bytes,
        };
        self.label_names.extend(chunk.labels.keys().cloned());
        self.chunk_bytes += chunk.bytes;
        self.chunks.push(Arc::new(chunk));
        Ok(stats)
    }

    /// A consistent view for readers: the chunks now held and the symbols they use.
    pub fn snapshot(&self) -> BufferSnapshot {
        BufferSnapshot {
            chunks: self.chunks.clone(),
            symbols: self.symbols.clone(),
        }
    }

    /// Drops every chunk with `seq <= through` (they are now in a block) and rebuilds the symbol
    /// table for the chunks that remain, rewriting their stack references. Deterministic: the
    /// same buffer and `through` give the same result on every replica.
    pub fn drop_through(&mut self, through: SeqNo) -> Result<()> {
        let keep: Vec<Arc<Chunk>> = self
            .chunks
            .iter()
            .filter(|c| c.seq > through)
            .cloned()
            .collect();
        if keep.len() == self.chunks.len() {
            return Ok(());
        }
        let old = self.symbols.read().expect("symbol lock poisoned");
        let mut symbols = SymbolTable::new();
        // Stacks still referenced, in first-use order, copied in one pass.
        let mut remap: Vec<Option<u32>> = vec![None; old.stack_count()];
        let mut used: Vec<u32> = Vec::new();
        for chunk in &keep {
            for &r in chunk.stack_refs().values().iter() {
                if remap[r as usize].is_none() {
                    remap[r as usize] = Some(0);
                    used.push(r);
                }
            }
        }
        for (r, new) in used
            .iter()
            .zip(symbols.copy_stacks_from(&old, used.iter().copied()))
        {
            remap[*r as usize] = Some(new);
        }
        let mut rebuilt = Vec::with_capacity(keep.len());
        for chunk in &keep {
            let refs: Vec<u32> = chunk
                .stack_refs()
                .values()
                .iter()
                .map(|&r| remap[r as usize].expect("every kept stack was copied"))
                .collect();
            rebuilt.push(Arc::new(rebuild_chunk(chunk, refs)?));
        }
        drop(old);
        self.chunks = rebuilt;
        self.chunk_bytes = self.chunks.iter().map(|c| c.bytes).sum();
        self.label_names = self
            .chunks
            .iter()
            .flat_map(|c| c.labels.keys().cloned())
            .collect();
        self.symbols = Arc::new(RwLock::new(symbols));
        Ok(())
    }
}

/// A chunk with its stack references replaced.
fn rebuild_chunk(chunk: &Chunk, refs: Vec<u32>) -> Result<Chunk> {
    use arrow::array::{Array, ArrayRef, ListArray, StructArray, UInt32Array};
    let arrow_err = |source| Error::Arrow {
        what: "a rebuilt buffer chunk",
        source,
    };
    let samples_index = chunk
        .batch
        .schema()
        .index_of("samples")
        .map_err(arrow_err)?;
    let list = chunk
        .batch
        .column(samples_index)
        .as_any()
        .downcast_ref::<ListArray>()
        .expect("samples is a list column");
    let structs = list
        .values()
        .as_any()
        .downcast_ref::<StructArray>()
        .expect("samples are structs");
    let mut children: Vec<ArrayRef> = structs.columns().to_vec();
    children[0] = Arc::new(UInt32Array::from(refs));
    let structs =
        StructArray::try_new(structs.fields().clone(), children, None).map_err(arrow_err)?;
    let (field, offsets, _, nulls) = list.clone().into_parts();
    let list = ListArray::try_new(field, offsets, Arc::new(structs), nulls).map_err(arrow_err)?;
    let mut columns = chunk.batch.columns().to_vec();
    columns[samples_index] = Arc::new(list);
    let batch = RecordBatch::try_new(chunk.batch.schema(), columns).map_err(arrow_err)?;
    Ok(Chunk {
        seq: chunk.seq,
        tenant: chunk.tenant.clone(),
        bytes: batch.get_array_memory_size() + std::mem::size_of::<Chunk>(),
        batch,
        min_time: chunk.min_time,
        max_time: chunk.max_time,
        samples: chunk.samples,
        labels: chunk.labels.clone(),
        profile_types: chunk.profile_types.clone(),
    })
}

/// A reader's view of the buffer, unaffected by later writes and flushes.
#[derive(Clone, Debug)]
pub struct BufferSnapshot {
    pub chunks: Vec<Arc<Chunk>>,
    pub symbols: Arc<RwLock<SymbolTable>>,
}

impl BufferSnapshot {
    /// Label names present for a tenant.
    pub fn label_names(&self, tenant: &TenantId) -> BTreeSet<String> {
        self.tenant_chunks(tenant)
            .flat_map(|c| c.labels.keys().cloned())
            .collect()
    }

    pub fn tenant_chunks<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> impl Iterator<Item = &'a Arc<Chunk>> + 'a {
        self.chunks.iter().filter(move |c| &c.tenant == tenant)
    }

    /// The flat sample rows of one chunk whose profile rows may pass `filter`, as batches of
    /// `schema` (any subset of the sample columns, without tenant) of at most `batch_rows`
    /// rows. Readers call it chunk by chunk, so a scan holds one chunk's rows at a time.
    pub fn scan_chunk(
        &self,
        chunk: &Chunk,
        filter: &ScanFilter,
        schema: &SchemaRef,
        batch_rows: usize,
    ) -> Result<Vec<RecordBatch>> {
        if !filter.overlaps_time(chunk.min_time, chunk.max_time)
            || !chunk
                .profile_types
                .iter()
                .any(|p| filter.keeps_profile_type(p))
        {
            return Ok(Vec::new());
        }
        let mut refs: Vec<SampleRef> = Vec::new();
        for row in 0..chunk.rows() {
            if row_may_match(chunk, row, filter) {
                refs.extend(chunk.sample_range(row).map(|sample| SampleRef {
                    chunk: 0,
                    row,
                    sample,
                }));
            }
        }
        let symbols = self.symbols.read().expect("symbol lock poisoned");
        refs.chunks(batch_rows.max(1))
            .map(|part| gather(&[chunk], part, schema, &symbols))
            .collect()
    }
}

/// Evaluates the prunable part of a filter on one profile row.
pub(crate) fn row_may_match(chunk: &Chunk, row: usize, filter: &ScanFilter) -> bool {
    let time = Nanos(chunk.i64_value(schema::TIME, row));
    if time < filter.time.start || time >= filter.time.end {
        return false;
    }
    if let Some(delta) = filter.delta
        && chunk.bool_value(schema::DELTA, row) != delta
    {
        return false;
    }
    if filter.profile_types.is_some()
        && !chunk
            .string_value(schema::PROFILE_TYPE, row)
            .is_some_and(|p| filter.keeps_profile_type(p))
    {
        return false;
    }
    filter
        .labels
        .iter()
        .all(|m| m.matches(chunk.string_value(&schema::label_column(&m.name), row)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{NormalizeLimits, normalize};
    use crate::testing::{ProfileBuilder, pprof_write};

    fn write(buffer: &mut Buffer, seq: u64, stacks: &[&[&str]]) {
        let mut b = ProfileBuilder::cpu();
        for s in stacks {
            b.sample(s, &[1, 1], &[]);
        }
        let n = normalize(
            pprof_write("t", &[], b.gzip(), Nanos(seq as i64)),
            &NormalizeLimits::default(),
        )
        .expect("valid");
        buffer.apply(SeqNo(seq), &n).expect("fits");
    }

    fn frames_by_id(snapshot: &BufferSnapshot, after: SeqNo) -> Vec<(crate::StackId, Vec<String>)> {
        let symbols = snapshot.symbols.read().expect("lock");
        let mut out: Vec<_> = snapshot
            .chunks
            .iter()
            .filter(|c| c.seq > after)
            .flat_map(|c| c.stack_refs().values().to_vec())
            .map(|r| {
                (
                    symbols.stack(r).id,
                    symbols.frame_names(r).map(str::to_owned).collect(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn dropping_flushed_chunks_keeps_the_rest_resolvable() {
        let mut buffer = Buffer::new(1 << 30, SeqNo(0));
        write(&mut buffer, 1, &[&["main", "a"], &["main", "b"]]);
        write(&mut buffer, 2, &[&["main", "b"], &["main", "c", "d"]]);
        write(&mut buffer, 3, &[&["main", "c", "d"], &["x"]]);
        let before = frames_by_id(&buffer.snapshot(), SeqNo(1));
        let symbols_before = buffer
            .snapshot()
            .symbols
            .read()
            .expect("lock")
            .stack_count();
        buffer.drop_through(SeqNo(1)).expect("drop");
        let after = frames_by_id(&buffer.snapshot(), SeqNo(0));
        assert_eq!(
            after, before,
            "remaining rows resolve to the same stacks and frames"
        );
        assert_eq!(buffer.first_seq(), Some(SeqNo(2)));
        let symbols_after = buffer
            .snapshot()
            .symbols
            .read()
            .expect("lock")
            .stack_count();
        assert_eq!(
            (symbols_before, symbols_after),
            (4, 3),
            "symbols only the remaining rows use are gone"
        );
    }
}
