//! A chunk: the rows of one write in the buffer, as one Arrow record batch with one row per
//! profile (series, profile type, time) and the samples nested in a list column. Profile-level
//! values are stored once per profile rather than once per sample, and a sample's value is
//! stored divided by the write's common factor (the period, for CPU profiles) in 32 bits when
//! it fits, which keeps a sample at about 8 bytes (a `u32` stack reference and an `i32` value).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, DictionaryArray, Int32Array, Int64Array, ListArray,
    RecordBatch, RecordBatchOptions, StringArray, StringDictionaryBuilder, StructArray,
    UInt32Array, UInt64Array, new_null_array,
};
use arrow::buffer::{Buffer as ArrowBuffer, OffsetBuffer};
use arrow::compute::interleave;
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::ids::{Nanos, SeqNo, TenantId};
use crate::normalize::ProfileRows;
use crate::schema;
use crate::symbols::{SymbolRef, SymbolTable};

const SAMPLES: &str = "samples";

/// Reads one per-sample link column of a profile row.
type LinkColumn = fn(&ProfileRows) -> &Option<Vec<Option<String>>>;
const STACK: &str = "stack";

/// The rows of one write.
#[derive(Debug)]
pub struct Chunk {
    pub seq: SeqNo,
    pub tenant: TenantId,
    pub batch: RecordBatch,
    pub min_time: Nanos,
    pub max_time: Nanos,
    pub samples: usize,
    /// Label names present, with the values seen.
    pub labels: BTreeMap<String, BTreeSet<String>>,
    pub profile_types: BTreeSet<String>,
    pub bytes: usize,
    /// Stored values are the real ones divided by this (see [`Chunk::value`]).
    value_scale: i64,
}

impl Chunk {
    /// Builds a chunk from normalised rows whose stacks are already table references.
    pub fn build(
        seq: SeqNo,
        tenant: TenantId,
        rows: &[ProfileRows],
        stack_refs: &[SymbolRef],
    ) -> Result<Self> {
        let arrow_err = |source| Error::Arrow {
            what: "a buffer chunk",
            source,
        };
        let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for row in rows {
            for (name, value) in row.labels.iter() {
                labels
                    .entry(name.to_owned())
                    .or_default()
                    .insert(value.to_owned());
            }
        }
        // Builders sized exactly: a chunk holds few profile rows, and default capacities
        // (1024 keys) would cost more than its samples.
        let mut profile_type = StringDictionaryBuilder::<Int32Type>::with_capacity(
            rows.len(),
            rows.len(),
            64 * rows.len(),
        );
        let mut profile_types = BTreeSet::new();
        for row in rows {
            let id = row.profile_type.id();
            profile_type.append_value(&id);
            profile_types.insert(id);
        }
        let mut columns: Vec<(Field, ArrayRef)> = vec![
            (
                Field::new(schema::PROFILE_TYPE, schema::dictionary_utf8(), false),
                Arc::new(profile_type.finish()),
            ),
            (
                Field::new(schema::DELTA, DataType::Boolean, false),
                Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.delta)))),
            ),
            (
                Field::new(schema::SERIES_ID, DataType::UInt64, false),
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.labels.fingerprint()),
                )),
            ),
            (
                Field::new(schema::TIME, DataType::Int64, false),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.time.0))),
            ),
            (
                Field::new(schema::DURATION, DataType::Int64, false),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|r| r.duration.0),
                )),
            ),
            (
                Field::new(schema::PERIOD, DataType::Int64, false),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.period))),
            ),
        ];
        for name in labels.keys() {
            let bytes: usize = labels[name].iter().map(String::len).sum();
            let mut builder = StringDictionaryBuilder::<Int32Type>::with_capacity(
                rows.len(),
                labels[name].len(),
                bytes,
            );
            for row in rows {
                builder.append_option(row.labels.get(name));
            }
            columns.push((
                Field::new(schema::label_column(name), schema::dictionary_utf8(), true),
                Arc::new(builder.finish()),
            ));
        }

        // Samples: List<Struct<stack, value, [links]>>.
        let samples: usize = rows.iter().map(|r| r.values.len()).sum();
        let stacks = UInt32Array::from_iter_values(
            rows.iter()
                .flat_map(|r| r.stacks.iter().map(|&s| stack_refs[s as usize])),
        );
        let (value_scale, values) = compact_values(rows);
        let mut sample_fields = vec![
            Field::new(STACK, DataType::UInt32, false),
            Field::new(schema::VALUE, values.data_type().clone(), false),
        ];
        let mut sample_arrays: Vec<ArrayRef> = vec![Arc::new(stacks), values];
        let link_columns: [(&str, LinkColumn); 3] = [
            (schema::TRACE_ID, |r| &r.links.trace_id),
            (schema::SPAN_ID, |r| &r.links.span_id),
            (schema::PROFILE_ID, |r| &r.links.profile_id),
        ];
        for (name, get) in link_columns {
            if rows.iter().any(|r| get(r).is_some()) {
                let array: StringArray = rows
                    .iter()
                    .flat_map(|r| match get(r) {
                        Some(c) => c.iter().map(|v| v.as_deref()).collect::<Vec<_>>(),
                        None => vec![None; r.values.len()],
                    })
                    .collect();
                sample_fields.push(Field::new(name, DataType::Utf8, true));
                sample_arrays.push(Arc::new(array));
            }
        }
        let fields = Fields::from(sample_fields);
        let structs =
            StructArray::try_new(fields.clone(), sample_arrays, None).map_err(arrow_err)?;
        let offsets = OffsetBuffer::from_lengths(rows.iter().map(|r| r.values.len()));
        let list_field = Arc::new(Field::new("item", DataType::Struct(fields), false));
        let list = ListArray::try_new(list_field.clone(), offsets, Arc::new(structs), None)
            .map_err(arrow_err)?;
        columns.push((
            Field::new(SAMPLES, DataType::List(list_field), false),
            Arc::new(list),
        ));

        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
        let batch =
            RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(arrow_err)?;
        let bytes = batch.get_array_memory_size() + std::mem::size_of::<Self>();
        Ok(Chunk {
            seq,
            tenant,
            min_time: rows.iter().map(|r| r.time).min().unwrap_or_default(),
            max_time: rows.iter().map(|r| r.time).max().unwrap_or_default(),
            samples,
            labels,
            profile_types,
            bytes,
            batch,
            value_scale,
        })
    }

    /// The value of a sample (a position in the samples list).
    pub fn value(&self, sample: usize) -> i64 {
        let Some(values) = self.sample_child(schema::VALUE) else {
            return 0;
        };
        if let Some(small) = values.as_any().downcast_ref::<Int32Array>() {
            i64::from(small.value(sample)) * self.value_scale
        } else {
            values
                .as_any()
                .downcast_ref::<Int64Array>()
                .map_or(0, |a| a.value(sample))
        }
    }

    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// This chunk with its stack references replaced (after the symbol table is rebuilt).
    pub fn with_stack_refs(&self, refs: Vec<u32>) -> Result<Chunk> {
        let arrow_err = |source| Error::Arrow {
            what: "a rebuilt buffer chunk",
            source,
        };
        let samples_index = self.batch.schema().index_of(SAMPLES).map_err(arrow_err)?;
        let list = self.samples();
        let structs = list
            .values()
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or(Error::Internal("chunk samples are not structs"))?;
        let mut children: Vec<ArrayRef> = structs.columns().to_vec();
        children[0] = Arc::new(UInt32Array::from(refs));
        let structs =
            StructArray::try_new(structs.fields().clone(), children, None).map_err(arrow_err)?;
        let (field, offsets, _, nulls) = list.clone().into_parts();
        let list =
            ListArray::try_new(field, offsets, Arc::new(structs), nulls).map_err(arrow_err)?;
        let mut columns = self.batch.columns().to_vec();
        columns[samples_index] = Arc::new(list);
        let batch = RecordBatch::try_new(self.batch.schema(), columns).map_err(arrow_err)?;
        Ok(Chunk {
            seq: self.seq,
            tenant: self.tenant.clone(),
            bytes: batch.get_array_memory_size() + std::mem::size_of::<Chunk>(),
            batch,
            min_time: self.min_time,
            max_time: self.max_time,
            samples: self.samples,
            labels: self.labels.clone(),
            profile_types: self.profile_types.clone(),
            value_scale: self.value_scale,
        })
    }

    pub fn column(&self, name: &str) -> Option<&ArrayRef> {
        self.batch.column_by_name(name)
    }

    fn samples(&self) -> &ListArray {
        self.batch
            .column_by_name(SAMPLES)
            .and_then(|c| c.as_any().downcast_ref::<ListArray>())
            .expect("every chunk has a samples list column")
    }

    fn sample_child(&self, name: &str) -> Option<&ArrayRef> {
        self.samples()
            .values()
            .as_any()
            .downcast_ref::<StructArray>()
            .and_then(|s| s.column_by_name(name))
    }

    /// The sample positions of a profile row.
    pub fn sample_range(&self, row: usize) -> std::ops::Range<usize> {
        let offsets = self.samples().value_offsets();
        offsets[row] as usize..offsets[row + 1] as usize
    }

    pub fn stack_refs(&self) -> &UInt32Array {
        self.sample_child(STACK)
            .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
            .expect("every chunk has a u32 stack column")
    }

    /// A string profile-level value of a row (profile type or a label), `None` when absent.
    pub fn string_value(&self, column: &str, row: usize) -> Option<&str> {
        let array = self
            .column(column)?
            .as_any()
            .downcast_ref::<DictionaryArray<Int32Type>>()?;
        if array.is_null(row) {
            return None;
        }
        let values = array.values().as_any().downcast_ref::<StringArray>()?;
        Some(values.value(array.keys().value(row) as usize))
    }

    pub fn i64_value(&self, column: &str, row: usize) -> i64 {
        self.column(column)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .map_or(0, |a| a.value(row))
    }

    pub fn u64_value(&self, column: &str, row: usize) -> u64 {
        self.column(column)
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            .map_or(0, |a| a.value(row))
    }

    pub fn bool_value(&self, column: &str, row: usize) -> bool {
        self.column(column)
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
            .is_some_and(|a| a.value(row))
    }
}

/// A write's values as an array: `Int32` of `value / scale` when every value divides by a
/// common `scale` and the quotients fit in 32 bits, else `Int64` with scale 1.
fn compact_values(rows: &[ProfileRows]) -> (i64, ArrayRef) {
    let all = || rows.iter().flat_map(|r| r.values.iter().copied());
    let scale = all()
        .map(i64::unsigned_abs)
        .fold(0u64, gcd)
        .clamp(1, i64::MAX as u64) as i64;
    let fits = all().all(|v| i32::try_from(v / scale).is_ok());
    if fits {
        let small = Int32Array::from_iter_values(all().map(|v| (v / scale) as i32));
        (scale, Arc::new(small))
    } else {
        (1, Arc::new(Int64Array::from_iter_values(all())))
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// How a gathered batch renders stacks.
#[derive(Clone, Copy, Debug)]
pub enum StackColumn<'a> {
    /// As 16-byte ids ([`schema::STACK_ID`]), from the buffer's symbol table.
    Ids(&'a SymbolTable),
    /// As ordinals into a block's stack table ([`schema::STACK`]), indexed by buffer reference.
    Ordinals(&'a [i32]),
}

/// One output sample: which chunk, which profile row, which sample position.
#[derive(Clone, Copy, Debug)]
pub struct SampleRef {
    pub chunk: usize,
    pub row: usize,
    pub sample: usize,
}

/// Gathers flat sample rows from chunks into one batch of `schema` (the flat sample schema,
/// with or without the tenant column, or a block's file schema). Stacks render as `stacks` says.
pub fn gather(
    chunks: &[&Chunk],
    samples: &[SampleRef],
    schema: &SchemaRef,
    stacks: StackColumn<'_>,
) -> Result<RecordBatch> {
    let arrow_err = |source| Error::Arrow {
        what: "flat sample rows",
        source,
    };
    let row_index: Vec<(usize, usize)> = samples.iter().map(|s| (s.chunk, s.row)).collect();
    let sample_index: Vec<(usize, usize)> = samples.iter().map(|s| (s.chunk, s.sample)).collect();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name().as_str();
        let array: ArrayRef = match name {
            schema::TENANT => {
                let mut builder = StringDictionaryBuilder::<Int32Type>::with_capacity(
                    samples.len(),
                    chunks.len(),
                    16 * chunks.len(),
                );
                for s in samples {
                    builder.append_value(chunks[s.chunk].tenant.as_str());
                }
                Arc::new(builder.finish())
            }
            schema::STACK_ID => {
                let StackColumn::Ids(symbols) = stacks else {
                    return Err(Error::Internal("stack ids gathered without a symbol table"));
                };
                // Keys local to this batch, values the 16-byte ids of the stacks it uses.
                let refs: Vec<&UInt32Array> = chunks.iter().map(|c| c.stack_refs()).collect();
                let mut local: HashMap<u32, i32> = HashMap::new();
                let mut ids: Vec<u8> = Vec::new();
                let keys: Int32Array = samples
                    .iter()
                    .map(|s| {
                        let stack = refs[s.chunk].value(s.sample);
                        *local.entry(stack).or_insert_with(|| {
                            ids.extend_from_slice(&symbols.stack(stack).id.to_bytes());
                            (ids.len() / 16 - 1) as i32
                        })
                    })
                    .collect();
                let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(16, ids.len() / 16));
                let values = BinaryArray::try_new(offsets, ArrowBuffer::from_vec(ids), None)
                    .map_err(arrow_err)?;
                Arc::new(
                    DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values))
                        .map_err(arrow_err)?,
                )
            }
            schema::STACK => {
                let StackColumn::Ordinals(ordinals) = stacks else {
                    return Err(Error::Internal(
                        "stack ordinals gathered without a block table",
                    ));
                };
                Arc::new(Int32Array::from_iter_values(samples.iter().map(|s| {
                    ordinals[chunks[s.chunk].stack_refs().value(s.sample) as usize]
                })))
            }
            schema::VALUE => Arc::new(Int64Array::from_iter_values(
                samples.iter().map(|s| chunks[s.chunk].value(s.sample)),
            )),
            schema::TRACE_ID | schema::SPAN_ID | schema::PROFILE_ID => {
                let sources: Vec<ArrayRef> = chunks
                    .iter()
                    .map(|c| {
                        c.sample_child(name)
                            .cloned()
                            .unwrap_or_else(|| new_null_array(field.data_type(), c.samples))
                    })
                    .collect();
                let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
                interleave(&refs, &sample_index).map_err(arrow_err)?
            }
            _ => {
                let sources: Vec<ArrayRef> = chunks
                    .iter()
                    .map(|c| {
                        c.column(name)
                            .cloned()
                            .unwrap_or_else(|| new_null_array(field.data_type(), c.rows()))
                    })
                    .collect();
                let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
                interleave(&refs, &row_index).map_err(arrow_err)?
            }
        };
        columns.push(array);
    }
    // With no columns projected (`count(*)`), the batch still carries its row count.
    let options = RecordBatchOptions::new().with_row_count(Some(samples.len()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(arrow_err)
}
