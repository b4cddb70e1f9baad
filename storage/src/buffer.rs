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

use crate::chunk::{Chunk, SampleRef, StackColumn, gather};
use crate::error::{Error, Result};
use crate::filter::ScanFilter;
use crate::ids::{Nanos, SeqNo, TenantId};
use crate::normalize::Normalized;
use crate::schema;
use crate::symbols::{SymbolSource, SymbolTable};

/// Estimated bytes a write will add, checked against the budget before anything changes.
fn estimate_bytes<S: SymbolSource>(normalized: &Normalized<S>) -> usize {
    let samples = normalized.sample_count();
    let rows = normalized.profiles.len();
    let labels: usize = normalized.profiles.iter().map(|p| p.labels.len()).sum();
    let symbols: usize = normalized.symbols.string_bytes()
        + normalized.symbols.location_count() * 64
        + normalized.symbols.stack_count() * 64
        + 4 * normalized.symbols.stack_location_count();
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
    /// The answer to a retry of a write already applied (its idempotency key was seen): the
    /// first write's stats, nothing added this time.
    pub repeated: bool,
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

    /// Refuses a write the budget cannot take ([`Error::BufferFull`]); changes nothing. A
    /// server checks before it proposes a write, so a committed write is one the buffer took.
    pub fn check_fits<S: SymbolSource>(&self, normalized: &Normalized<S>) -> Result<()> {
        let needed = estimate_bytes(normalized);
        let used = self.memory_bytes();
        if used.saturating_add(needed) > self.budget {
            return Err(Error::BufferFull {
                needed,
                used,
                budget: self.budget,
            });
        }
        Ok(())
    }

    /// Appends a write. Refuses, changing nothing, when the sequence number does not increase or
    /// the write would take the buffer past its budget.
    pub fn apply<S: SymbolSource>(
        &mut self,
        seq: SeqNo,
        normalized: &Normalized<S>,
    ) -> Result<WriteStats> {
        self.check_fits(normalized)?;
        self.apply_unbudgeted(seq, normalized)
    }

    /// Appends a write without checking the budget: for writes admitted earlier (a Raft
    /// group's committed entries), which must apply wherever they are replayed.
    pub fn apply_unbudgeted<S: SymbolSource>(
        &mut self,
        seq: SeqNo,
        normalized: &Normalized<S>,
    ) -> Result<WriteStats> {
        if seq <= self.last_seq {
            return Err(Error::SequenceNotIncreasing {
                seq,
                last: self.last_seq,
            });
        }
        if normalized.profiles.is_empty() {
            self.last_seq = seq;
            return Ok(WriteStats::default());
        }
        let refs = {
            let mut symbols = self.symbols.write().expect("symbol lock poisoned");
            normalized
                .symbols
                .prepare(&symbols)
                .map_err(|reason| Error::CorruptWrite { reason })?;
            symbols.intern(&normalized.symbols)
        };
        let chunk = Chunk::build(seq, normalized.tenant.clone(), &normalized.profiles, &refs)?;
        self.last_seq = seq;
        let stats = WriteStats {
            profiles: chunk.rows(),
            samples: chunk.samples,
            bytes: chunk.bytes,
            repeated: false,
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
            rebuilt.push(Arc::new(chunk.with_stack_refs(refs)?));
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

    /// The largest sampling period among a tenant's profile rows that pass `filter`.
    pub fn max_period(&self, tenant: &TenantId, filter: &ScanFilter) -> i64 {
        self.tenant_chunks(tenant)
            .flat_map(|c| {
                (0..c.rows())
                    .filter(|&r| row_may_match(c, r, filter))
                    .map(|r| c.i64_value(schema::PERIOD, r))
            })
            .max()
            .unwrap_or(0)
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
            .map(|part| gather(&[chunk], part, schema, StackColumn::Ids(&symbols)))
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

    /// Values are stored as `value / common factor` in 32 bits when they fit; each case must
    /// read back exactly, through the compact form or the 64-bit fallback.
    #[test]
    fn values_read_back_exactly_in_compact_and_wide_form() {
        let cases: [(&[i64], bool); 5] = [
            (&[10_000_000, 30_000_000, 7_000_000_000], true),
            (&[3, 5, -7], true),
            (&[5_000_000_001, 1], false),
            (&[i64::MAX, 3], false),
            // Both divide by i64::MAX: stored as 1 and -1.
            (&[i64::MAX, i64::MIN + 1], true),
        ];
        for (seq, (values, compact)) in cases.into_iter().enumerate() {
            let mut b = ProfileBuilder::new(
                &[("cpu", "nanoseconds")],
                ("cpu", "nanoseconds"),
                10_000_000,
            );
            for (i, &v) in values.iter().enumerate() {
                b.sample(&["main", &format!("f{i}")], &[v], &[]);
            }
            let n = normalize(
                pprof_write("t", &[], b.gzip(), Nanos(1)),
                &NormalizeLimits::default(),
            )
            .expect("valid");
            let mut buffer = Buffer::new(1 << 30, SeqNo(0));
            buffer.apply(SeqNo(seq as u64 + 1), &n).expect("fits");
            let snapshot = buffer.snapshot();
            let chunk = &snapshot.chunks[0];
            let mut read: Vec<i64> = (0..chunk.samples).map(|s| chunk.value(s)).collect();
            let mut expected: Vec<i64> = values.to_vec();
            read.sort_unstable();
            expected.sort_unstable();
            assert_eq!(read, expected, "values {values:?}");
            let bytes_per_value = chunk.bytes as f64 / chunk.samples as f64;
            let samples = chunk.batch.schema().field_with_name("samples").cloned();
            let value_type = match samples.expect("samples column").data_type() {
                arrow::datatypes::DataType::List(item) => match item.data_type() {
                    arrow::datatypes::DataType::Struct(fields) => fields
                        .find(schema::VALUE)
                        .map(|(_, f)| f.data_type().clone()),
                    _ => None,
                },
                _ => None,
            };
            assert_eq!(
                value_type == Some(arrow::datatypes::DataType::Int32),
                compact,
                "values {values:?} ({bytes_per_value:.1} bytes a sample)"
            );
        }
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
