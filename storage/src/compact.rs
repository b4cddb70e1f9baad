//! Compaction: one tenant's rows from several blocks merged into one block per time window,
//! its symbols rewritten once (only the stacks those rows use).
//!
//! ```text
//!  plan:    per tenant, its entries in the manifest by window (an hour while recent, a day
//!           once the day is over) ─► a job when a window has two entries or more, or one in
//!           a block shared with other tenants (at most `memory_bytes / JOB_BYTES_PER_ROW` rows
//!           per job); while the window is still filling, only when `open_fan_in` blocks of
//!           one generation (compactions their rows have been through) are there to merge,
//!           so a row is rewritten about once a generation
//!  run:     read the tenant's row groups of each input ─► stacks remapped into one symbol
//!           table ─► rows regrouped into profiles ─► one block, as a flush writes it
//!  swap:    (a Raft command on a server) every input still holds the tenant, else nothing
//!           changes ─► the tenant leaves the inputs, the output joins the manifest; an input
//!           left with no tenant is retired, and its objects are deleted after a delay so that
//!           queries already reading it finish
//! ```
//!
//! A job's memory is bounded by its rows: it reads one input object at a time, a batch at a
//! time, into its output's profiles, so it holds about `JOB_BYTES_PER_ROW` per row merged.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::block::{BlockMeta, EncodedBlock, encode_block};
use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::ids::{BlockId, Nanos, SeqNo, TenantId};
use crate::labels::{LabelLimits, Labels};
use crate::manifest::Manifest;
use crate::normalize::{Links, ProfileRows};
use crate::profile_type::ProfileType;
use crate::schema;
use crate::stack_codec::{StackDecoder, StackEncoding};
use crate::store::{Store, get};
use crate::symbols::{SymbolRef, SymbolTable};

const HOUR: Nanos = Nanos(3_600_000_000_000);
const DAY: Nanos = Nanos(24 * 3_600_000_000_000);

/// A job's memory per row it merges, at its peak (encoding the output): the regrouped stack and
/// value (12 bytes, up to twice that while vectors grow), the output chunk's (12), the sort
/// order of its profiles and samples, and the encoded row group.
pub const JOB_BYTES_PER_ROW: u64 = 64;

/// When and how much to compact.
#[derive(Clone, Copy, Debug)]
pub struct CompactionOptions {
    /// The window of recent rows (an hour).
    pub window: Nanos,
    /// The window of rows older than a day (a day).
    pub old_window: Nanos,
    /// How long after a window ends its entries wait (late writes still land in it).
    pub settle: Nanos,
    /// Memory one job may use: it merges at most `memory_bytes / JOB_BYTES_PER_ROW` rows.
    pub memory_bytes: u64,
    /// A window still filling is merged once this many of its blocks (at least 2) have been
    /// through as many compactions.
    pub open_fan_in: usize,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        Self {
            window: HOUR,
            old_window: DAY,
            settle: Nanos(5 * 60 * 1_000_000_000),
            memory_bytes: 256 << 20,
            open_fan_in: 8,
        }
    }
}

/// One tenant's entries of one window, to merge into one block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionJob {
    pub tenant: TenantId,
    pub window_start: Nanos,
    pub window: Nanos,
    pub inputs: Vec<BlockId>,
}

impl CompactionJob {
    /// The output's id: the tenant's window, and a nonce (the proposer's term and time) so that
    /// two attempts never write the same key.
    pub fn output_id(&self, shard: crate::ids::ShardId, nonce: u64) -> Result<BlockId> {
        let tenant: String = self
            .tenant
            .as_str()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        BlockId::from_raw(format!(
            "{:05}-c-{}-{:020}-{}-{nonce:016x}",
            shard.0, self.window.0, self.window_start.0, tenant
        ))
    }
}

/// A block out of the manifest whose objects wait for deletion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredBlock {
    pub id: BlockId,
    /// When it left the manifest (the proposer's clock).
    pub at: Nanos,
}

/// A tenant's window: (tenant, window length, window start).
type WindowKey = (TenantId, Nanos, Nanos);
/// A tenant's entry in a block of a window.
struct Entry {
    id: BlockId,
    /// The tenant's rows in the block.
    rows: u64,
    /// Whether other tenants share the block.
    shared: bool,
    /// Compactions the tenant's rows in it have been through.
    generation: u32,
}

/// A window's entries, and whether the window is still filling.
#[derive(Default)]
struct Window {
    filling: bool,
    entries: Vec<Entry>,
}

/// A window still filling is merged a generation at a time, so that the newest hour, the one
/// most queries read, holds a few blocks rather than every flush's: the entries of the lowest
/// generation with `fan_in` of them or more, or none. Their output is a generation older, so a
/// row is rewritten at most once a generation (about log_fan_in of the window's flushes)
/// before its window closes, and the window holds fewer than `fan_in` blocks a generation
/// (besides those past the rows cap, which are left as they are).
fn open_window_inputs(entries: Vec<Entry>, fan_in: usize) -> Vec<Entry> {
    let mut generations: BTreeMap<u32, Vec<Entry>> = BTreeMap::new();
    for entry in entries {
        generations.entry(entry.generation).or_default().push(entry);
    }
    generations
        .into_values()
        .find(|entries| entries.len() >= fan_in.max(2))
        .unwrap_or_default()
}

/// The jobs the manifest offers at `now`, oldest windows first, at most `limit`.
pub fn plan(
    manifest: &Manifest,
    now: Nanos,
    options: &CompactionOptions,
    limit: usize,
) -> Vec<CompactionJob> {
    let mut windows: BTreeMap<WindowKey, Window> = BTreeMap::new();
    for block in &manifest.blocks {
        let shared = block.tenants.len() > 1;
        for (tenant, meta) in &block.tenants {
            let day_over = meta.max_time.0.saturating_add(options.settle.0)
                < now.0.saturating_sub(options.old_window.0);
            let window = if day_over {
                options.old_window
            } else {
                options.window
            };
            let start = Nanos(meta.min_time.0.div_euclid(window.0) * window.0);
            let end = start.0.saturating_add(window.0);
            if meta.max_time.0 >= end {
                // Spans windows: kept as it is.
                continue;
            }
            let entry = windows.entry((tenant.clone(), window, start)).or_default();
            entry.filling = end.saturating_add(options.settle.0) > now.0;
            entry.entries.push(Entry {
                id: block.id.clone(),
                rows: meta.rows,
                shared,
                generation: meta.generation,
            });
        }
    }
    let max_rows = options.memory_bytes / JOB_BYTES_PER_ROW;
    let mut jobs = Vec::new();
    for (
        (tenant, window, start),
        Window {
            filling,
            mut entries,
        },
    ) in windows
    {
        if filling {
            // Still filling: only a generation's worth of blocks is merged.
            entries = open_window_inputs(entries, options.open_fan_in);
        }
        // The smallest inputs first, while they fit in the job's rows: a window with more
        // becomes several blocks, and a block already half the cap or more is left as it is
        // unless it is shared (its tenant's rows still leave it). A shared block whose share
        // alone is over the cap is taken out by itself.
        entries.sort_by(|a, b| (a.rows, &a.id).cmp(&(b.rows, &b.id)));
        let mut rows = 0u64;
        let mut inputs: Vec<(BlockId, bool)> = Vec::new();
        let mut oversized_shared = None;
        for Entry {
            id,
            rows: share,
            shared,
            ..
        } in entries
        {
            if !shared && share.saturating_mul(2) >= max_rows {
                continue;
            }
            if rows.saturating_add(share) <= max_rows {
                rows += share;
                inputs.push((id, shared));
            } else if shared && share > max_rows && oversized_shared.is_none() {
                oversized_shared = Some(id);
            }
        }
        if inputs.is_empty()
            && let Some(id) = oversized_shared
        {
            inputs.push((id, true));
        }
        // A shared block alone is worth taking the tenant out of once its window is over.
        let worth = inputs.len() >= 2 || (!filling && inputs.iter().any(|(_, shared)| *shared));
        if worth {
            jobs.push(CompactionJob {
                tenant,
                window_start: start,
                window,
                inputs: inputs.into_iter().map(|(id, _)| id).collect(),
            });
        }
    }
    jobs.sort_by_key(|j| j.window_start);
    jobs.truncate(limit);
    jobs
}

impl Manifest {
    /// The swap of a compaction: applied only if every input still holds the job's tenant
    /// (else nothing changes and `false` is returned, so two attempts never both land).
    pub fn apply_compaction(&mut self, job: &CompactionJob, output: BlockMeta, at: Nanos) -> bool {
        let present = job.inputs.iter().all(|id| {
            self.blocks
                .iter()
                .any(|b| b.id == *id && b.tenants.contains_key(&job.tenant))
        });
        if !present || self.blocks.iter().any(|b| b.id == output.id) {
            return false;
        }
        for block in self
            .blocks
            .iter_mut()
            .filter(|b| job.inputs.contains(&b.id))
        {
            block.tenants.remove(&job.tenant);
        }
        let emptied: Vec<BlockId> = self
            .blocks
            .iter()
            .filter(|b| b.tenants.is_empty())
            .map(|b| b.id.clone())
            .collect();
        self.blocks.retain(|b| !b.tenants.is_empty());
        self.retired
            .extend(emptied.into_iter().map(|id| RetiredBlock { id, at }));
        self.blocks.push(output);
        self.version += 1;
        true
    }

    /// Retired blocks that left the manifest before `before`.
    pub fn retired_before(&self, before: Nanos) -> Vec<BlockId> {
        self.retired
            .iter()
            .filter(|r| r.at < before)
            .map(|r| r.id.clone())
            .collect()
    }

    /// Forgets retired blocks whose objects are deleted.
    pub fn forget_retired(&mut self, ids: &[BlockId]) -> bool {
        let before = self.retired.len();
        self.retired.retain(|r| !ids.contains(&r.id));
        let changed = self.retired.len() != before;
        if changed {
            self.version += 1;
        }
        changed
    }
}

impl Store {
    /// Applies a compaction's swap ([`Manifest::apply_compaction`]); true if it landed.
    pub fn apply_compaction(&self, job: &CompactionJob, output: BlockMeta, at: Nanos) -> bool {
        self.update_manifest(|m| m.apply_compaction(job, output, at))
    }

    /// Forgets retired blocks whose objects are deleted.
    pub fn forget_retired(&self, ids: &[BlockId]) -> bool {
        self.update_manifest(|m| m.forget_retired(ids))
    }

    /// Deletes a block's objects (they are in no manifest: retired, or a compaction's output
    /// that did not land).
    pub async fn delete_block_objects(&self, id: &BlockId) -> Result<()> {
        let os = self.object_store().as_ref();
        crate::store::delete(os, &self.paths().block_samples(id)).await?;
        crate::store::delete(os, &self.paths().block_symbols(id)).await
    }

    /// Runs a job: reads the tenant's rows of every input and writes them as one block `id`
    /// (not uploaded). `None` if the inputs hold no rows of the tenant.
    pub async fn compact(&self, job: &CompactionJob, id: BlockId) -> Result<Option<EncodedBlock>> {
        let manifest = self.manifest();
        let mut inputs = Vec::with_capacity(job.inputs.len());
        let mut generation = 1u32;
        for input in &job.inputs {
            let Some(meta) = manifest.blocks.iter().find(|b| b.id == *input) else {
                return Ok(None);
            };
            let Some(tenant) = meta.tenants.get(&job.tenant) else {
                return Ok(None);
            };
            inputs.push((meta, tenant.row_groups));
            generation = generation.max(tenant.generation.saturating_add(1));
        }
        let (first, last) = inputs
            .iter()
            .fold((SeqNo(u64::MAX), SeqNo(0)), |(f, l), (b, _)| {
                (f.min(b.first_seq), l.max(b.last_seq))
            });
        // One input's object is in memory at a time, and its rows are decoded a batch at a
        // time into the job's profiles: the job holds its output's rows, not its inputs'.
        let mut state = Some((SymbolTable::new(), Regrouped::default()));
        for (meta, row_groups) in inputs {
            let samples = get(
                self.object_store().as_ref(),
                &self.paths().block_samples(&meta.id),
            )
            .await?;
            let block_symbols = self.read_symbols(&meta.id).await?;
            // The Parquet file is the object's head (the symbols follow it).
            let parquet_len = usize::try_from(meta.samples_bytes).unwrap_or(usize::MAX);
            if parquet_len > samples.len() {
                return Err(Error::Corrupt {
                    key: meta.id.to_string(),
                    reason: format!(
                        "{} bytes, shorter than its {parquet_len}-byte Parquet file",
                        samples.len()
                    ),
                });
            }
            let samples = samples.slice(..parquet_len);
            let input = meta.id.clone();
            let encoding = meta.stack;
            let (mut symbols, mut rows) = state.take().expect("state is put back after each input");
            state = Some(
                tokio::task::spawn_blocking(move || {
                    add_input(
                        &input,
                        encoding,
                        row_groups,
                        samples,
                        &block_symbols,
                        &mut symbols,
                        &mut rows,
                    )
                    .map(|()| (symbols, rows))
                })
                .await
                .map_err(|_| Error::Internal("a compaction task panicked"))??,
            );
        }
        let (symbols, rows) = state.take().expect("state is put back after each input");
        let rows = rows.rows;
        if rows.is_empty() {
            return Ok(None);
        }
        let tenant = job.tenant.clone();
        let options = self.config().block;
        tokio::task::spawn_blocking(move || {
            let identity: Vec<SymbolRef> = (0..symbols.stack_count() as u32).collect();
            let chunk = Chunk::build(last.max(first), tenant, &rows, &identity)?;
            drop(rows);
            encode_block(id, &[Arc::new(chunk)], &symbols, &options).map(|mut block| {
                block.meta.first_seq = first.min(last);
                block.meta.last_seq = last;
                for meta in block.meta.tenants.values_mut() {
                    meta.generation = generation;
                }
                Some(block)
            })
        })
        .await
        .map_err(|_| Error::Internal("a compaction task panicked"))?
    }
}

/// Adds one input's row groups `from..to` of the tenant to the job's profiles, copying the
/// stacks they use into `symbols` as they are met (a shared block holds other tenants' too).
fn add_input(
    input: &BlockId,
    encoding: StackEncoding,
    (from, to): (usize, usize),
    samples: bytes::Bytes,
    block_symbols: &SymbolTable,
    symbols: &mut SymbolTable,
    rows: &mut Regrouped,
) -> Result<()> {
    let corrupt = |reason: String| Error::Corrupt {
        key: input.to_string(),
        reason,
    };
    let batches = ParquetRecordBatchReaderBuilder::try_new(samples)
        .and_then(|b| {
            b.with_row_groups((from..to).collect())
                .with_batch_size(8192)
                .build()
        })
        .map_err(|e| corrupt(e.to_string()))?;
    let count = block_symbols.stack_count();
    // Block rows name a stack by its ordinal in the block's table.
    let mut refs = vec![SymbolRef::MAX; count];
    let mut decoder = StackDecoder::new(encoding);
    for batch in batches {
        let batch = batch.map_err(|source| Error::Arrow {
            what: "a compacted block's rows",
            source,
        })?;
        let index = batch
            .schema()
            .index_of(schema::STACK)
            .map_err(|_| corrupt("no stack column".into()))?;
        let stored = batch
            .column(index)
            .as_primitive_opt::<Int32Type>()
            .ok_or_else(|| corrupt("the stack column is not Int32".into()))?;
        let stack = decoder.decode(stored).map_err(corrupt)?;
        let mut columns = batch.columns().to_vec();
        columns[index] = Arc::new(stack.clone());
        let batch =
            RecordBatch::try_new(batch.schema(), columns).map_err(|e| corrupt(e.to_string()))?;
        let mut new = Vec::new();
        for &ordinal in stack.values().iter() {
            let Some(r) = usize::try_from(ordinal).ok().filter(|&o| o < count) else {
                return Err(corrupt(format!(
                    "stack ordinal {ordinal} past the block's {count} stacks"
                )));
            };
            if refs[r] == SymbolRef::MAX {
                // Marked now so a repeat in this batch is not copied twice.
                refs[r] = SymbolRef::MAX - 1;
                new.push(r as SymbolRef);
            }
        }
        for (&ordinal, r) in new
            .iter()
            .zip(symbols.copy_stacks_from(block_symbols, new.iter().copied()))
        {
            refs[ordinal as usize] = r;
        }
        rows.add(&batch, &refs).map_err(corrupt)?;
    }
    Ok(())
}

/// Block rows (one per sample) regrouped into profiles: consecutive samples with the same
/// profile type, delta, series, time, duration and period are one profile (blocks are sorted
/// so).
#[derive(Default)]
struct Regrouped {
    rows: Vec<ProfileRows>,
    /// The last profile's key: profile type id, delta, series id, time, duration, period.
    last: Option<(String, bool, u64, i64, i64, i64)>,
}

impl Regrouped {
    /// Appends a batch; stacks become `refs[ordinal]` (checked by the caller).
    fn add(&mut self, batch: &RecordBatch, refs: &[SymbolRef]) -> std::result::Result<(), String> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("no {name} column"))
        };
        let text = |name: &str| -> std::result::Result<Arc<dyn Array>, String> {
            cast(column(name)?, &DataType::Utf8).map_err(|e| format!("{name}: {e}"))
        };
        let profile_type = text(schema::PROFILE_TYPE)?;
        let profile_type = profile_type.as_string::<i32>();
        let delta = column(schema::DELTA)?.as_boolean();
        // Blocks do not store series ids: the labels give them.
        let series = schema::series_ids(batch)?;
        let time = column(schema::TIME)?.as_primitive::<Int64Type>();
        let duration = column(schema::DURATION)?.as_primitive::<Int64Type>();
        let period = column(schema::PERIOD)?.as_primitive::<Int64Type>();
        let stack = column(schema::STACK)?
            .as_primitive_opt::<Int32Type>()
            .ok_or("the stack column is not Int32")?;
        let value = column(schema::VALUE)?.as_primitive::<Int64Type>();
        let links: Vec<Option<Arc<dyn Array>>> =
            [schema::TRACE_ID, schema::SPAN_ID, schema::PROFILE_ID]
                .iter()
                .map(|name| batch.column_by_name(name).map(|_| text(name)).transpose())
                .collect::<std::result::Result<_, _>>()?;
        let mut labels: Vec<(String, Arc<dyn Array>)> = Vec::new();
        for field in batch.schema().fields() {
            if let Some(name) = schema::label_name(field.name()) {
                labels.push((name.to_owned(), text(field.name())?));
            }
        }
        // Stored rows passed the limits when written; a later, lower limit must not drop them.
        let limits = LabelLimits {
            max_name_len: usize::MAX,
            max_value_len: usize::MAX,
            max_labels_per_series: usize::MAX,
        };
        for r in 0..batch.num_rows() {
            let key_matches = self.last.as_ref().is_some_and(|(t, d, s, ti, du, pe)| {
                *s == series.value(r)
                    && *ti == time.value(r)
                    && *d == delta.value(r)
                    && *du == duration.value(r)
                    && *pe == period.value(r)
                    && t == profile_type.value(r)
            });
            if !key_matches {
                let pairs = labels.iter().filter_map(|(name, values)| {
                    let v = values.as_string::<i32>();
                    (!v.is_null(r)).then(|| (name.clone(), v.value(r).to_owned()))
                });
                self.rows.push(ProfileRows {
                    profile_type: ProfileType::parse(profile_type.value(r))
                        .map_err(|e| e.to_string())?,
                    delta: delta.value(r),
                    labels: Labels::new(pairs, &limits).map_err(|e| e.to_string())?,
                    time: Nanos(time.value(r)),
                    duration: Nanos(duration.value(r)),
                    period: period.value(r),
                    stacks: Vec::new(),
                    values: Vec::new(),
                    // A link column holds something only once a sample has a link (most
                    // profiles have none, and a `None` per sample would cost 24 bytes).
                    links: Links::default(),
                });
                self.last = Some((
                    profile_type.value(r).to_owned(),
                    delta.value(r),
                    series.value(r),
                    time.value(r),
                    duration.value(r),
                    period.value(r),
                ));
            }
            let p = self.rows.last_mut().expect("a profile row was just pushed");
            p.stacks.push(refs[stack.value(r) as usize]);
            p.values.push(value.value(r));
            let targets = [
                &mut p.links.trace_id,
                &mut p.links.span_id,
                &mut p.links.profile_id,
            ];
            for (i, target) in targets.into_iter().enumerate() {
                let value = links[i].as_ref().and_then(|column| {
                    let c = column.as_string::<i32>();
                    (!c.is_null(r)).then(|| c.value(r).to_owned())
                });
                match (target.as_mut(), value) {
                    (Some(values), value) => values.push(value),
                    (None, Some(value)) => {
                        let mut values = vec![None; p.stacks.len() - 1];
                        values.push(Some(value));
                        *target = Some(values);
                    }
                    (None, None) => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
