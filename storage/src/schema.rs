//! Column names and Arrow schemas of sample rows, shared by the buffer, blocks and queries.
//!
//! A sample row is flat: profile-level columns (repeated for each sample of a profile, and
//! dictionary- or run-length-encoded where they are stored) then sample columns. Labels are
//! dynamic columns `labels.<name>`, one per label name ever seen, null where a row lacks it.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, RecordBatch, StringArray, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};

pub const TENANT: &str = "tenant";
pub const PROFILE_TYPE: &str = "profile_type";
pub const DELTA: &str = "delta";
pub const SERIES_ID: &str = "series_id";
pub const TIME: &str = "time_nanos";
pub const DURATION: &str = "duration_nanos";
pub const PERIOD: &str = "period";
pub const STACK_ID: &str = "stack_id";
/// In a block's Parquet file, the stack of a sample as an ordinal into the block's stack table
/// (`symbols.bin`) instead of the 16-byte id: within a profile the ordinals rise and stay
/// small, so byte stream split and zstd store a sample's stack in under a byte.
pub const STACK: &str = "stack";
pub const VALUE: &str = "value";
pub const TRACE_ID: &str = "trace_id";
pub const SPAN_ID: &str = "span_id";
pub const PROFILE_ID: &str = "profile_id";
pub const LABEL_PREFIX: &str = "labels.";

/// The width of a stack id.
pub const STACK_ID_BYTES: i32 = 16;

/// The type of the stack id column: 16-byte ids, dictionary-encoded. Rows repeat a few thousand
/// stacks, so in memory a row costs a 4-byte key and in Parquet a few bits (a plain
/// `FixedSizeBinary` column is written without a dictionary and costs 16 bytes a row).
pub fn stack_id_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Binary))
}

pub fn dictionary_utf8() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The column of a label name.
pub fn label_column(name: &str) -> String {
    format!("{LABEL_PREFIX}{name}")
}

/// The label name of a column, if it is a label column.
pub fn label_name(column: &str) -> Option<&str> {
    column.strip_prefix(LABEL_PREFIX)
}

/// The fixed columns, in order, without the tenant.
pub fn fixed_fields() -> Vec<Field> {
    vec![
        Field::new(PROFILE_TYPE, dictionary_utf8(), false),
        Field::new(DELTA, DataType::Boolean, false),
        Field::new(SERIES_ID, DataType::UInt64, false),
        Field::new(TIME, DataType::Int64, false),
        Field::new(DURATION, DataType::Int64, false),
        Field::new(PERIOD, DataType::Int64, false),
        Field::new(STACK_ID, stack_id_type(), false),
        Field::new(VALUE, DataType::Int64, false),
        Field::new(TRACE_ID, DataType::Utf8, true),
        Field::new(SPAN_ID, DataType::Utf8, true),
        Field::new(PROFILE_ID, DataType::Utf8, true),
    ]
}

/// The schema of sample rows with the given label names (sorted by the caller or not; columns
/// come out sorted by name). `with_tenant` adds the leading tenant column blocks carry.
pub fn sample_schema<'a>(
    label_names: impl IntoIterator<Item = &'a str>,
    with_tenant: bool,
) -> SchemaRef {
    let mut names: Vec<&str> = label_names.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    let mut fields = Vec::with_capacity(names.len() + 12);
    if with_tenant {
        fields.push(Field::new(TENANT, dictionary_utf8(), false));
    }
    fields.extend(fixed_fields());
    fields.extend(
        names
            .iter()
            .map(|n| Field::new(label_column(n), dictionary_utf8(), true)),
    );
    Arc::new(Schema::new(fields))
}

/// The schema a block's Parquet file is written with: [`sample_schema`] with the tenant, the
/// stack as an `Int32` ordinal ([`STACK`]) where the table has [`STACK_ID`], and no
/// [`SERIES_ID`]: a row's series id is the fingerprint of its labels, recomputed when read
/// ([`series_ids`]), where storing it cost more than any label column (a random 64-bit value per
/// series change: 6 of 20 bytes a row at a million series).
pub fn block_schema<'a>(label_names: impl IntoIterator<Item = &'a str>) -> SchemaRef {
    let read = block_file_schema(&sample_schema(label_names, true));
    let fields: Vec<Field> = read
        .fields()
        .iter()
        .filter(|f| f.name() != SERIES_ID)
        .map(|f| f.as_ref().clone())
        .collect();
    Arc::new(Schema::new(fields))
}

/// The schema blocks are read as: `schema` with its [`STACK_ID`] field, if any, replaced by the
/// block file's [`STACK`] ordinal at the same position (so projections index both alike), and
/// [`SERIES_ID`] nullable (files lack it, or hold what [`series_ids`] recomputes anyway).
pub fn block_file_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            STACK_ID => Field::new(STACK, DataType::Int32, false),
            SERIES_ID => Field::new(SERIES_ID, DataType::UInt64, true),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The series id of every row of `batch` from its label columns (`labels.<name>`, as text or
/// dictionary-encoded text; a null is an absent label): for each row what
/// [`crate::labels::Labels::fingerprint`] gives its label set. Rows come sorted by series, so
/// a row whose labels equal the row before's reuses its id.
pub fn series_ids(batch: &RecordBatch) -> Result<UInt64Array, String> {
    let mut owned: Vec<(&str, ArrayRef)> = Vec::new();
    for (field, column) in batch.schema_ref().fields().iter().zip(batch.columns()) {
        let Some(name) = label_name(field.name()) else {
            continue;
        };
        let column = match column.data_type() {
            DataType::Utf8 => column.clone(),
            DataType::Dictionary(key, value)
                if **key == DataType::Int32 && **value == DataType::Utf8 =>
            {
                column.clone()
            }
            _ => cast(column, &DataType::Utf8).map_err(|e| format!("{}: {e}", field.name()))?,
        };
        owned.push((name, column));
    }
    owned.sort_by(|a, b| a.0.cmp(b.0));
    let columns: Vec<(&str, LabelColumn<'_>)> = owned
        .iter()
        .map(|(name, column)| {
            let column = match column.as_dictionary_opt::<Int32Type>() {
                Some(d) => LabelColumn::Dictionary(d, d.values().as_string::<i32>()),
                None => LabelColumn::Text(column.as_string::<i32>()),
            };
            (*name, column)
        })
        .collect();
    let mut ids: Vec<u64> = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        if let Some(&last) = ids.last()
            && columns.iter().all(|(_, c)| c.same(r - 1, r))
        {
            ids.push(last);
            continue;
        }
        ids.push(crate::labels::fingerprint(
            columns
                .iter()
                .filter_map(|(name, c)| c.value(r).map(|v| (*name, v))),
        ));
    }
    Ok(UInt64Array::from(ids))
}

/// A label column as [`series_ids`] reads it.
enum LabelColumn<'a> {
    Dictionary(&'a DictionaryArray<Int32Type>, &'a StringArray),
    Text(&'a StringArray),
}

impl LabelColumn<'_> {
    /// The row's value; `None` when null or empty (absent).
    fn value(&self, row: usize) -> Option<&str> {
        let value = match self {
            LabelColumn::Dictionary(d, values) => {
                if d.is_null(row) {
                    return None;
                }
                let key = d.keys().value(row);
                usize::try_from(key)
                    .ok()
                    .filter(|&k| k < values.len() && values.is_valid(k))
                    .map(|k| values.value(k))?
            }
            LabelColumn::Text(t) => (!t.is_null(row)).then(|| t.value(row))?,
        };
        (!value.is_empty()).then_some(value)
    }

    /// Whether rows `a` and `b` hold the same value (same key, for a dictionary).
    fn same(&self, a: usize, b: usize) -> bool {
        match self {
            LabelColumn::Dictionary(d, _) => {
                d.is_null(a) == d.is_null(b) && d.keys().value(a) == d.keys().value(b)
            }
            LabelColumn::Text(_) => self.value(a) == self.value(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_columns_are_sorted_and_nullable() {
        let schema = sample_schema(["pod", "service_name", "pod"], true);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names[0], TENANT);
        assert_eq!(
            &names[names.len() - 2..],
            ["labels.pod", "labels.service_name"]
        );
        assert!(
            schema
                .field_with_name("labels.pod")
                .expect("present")
                .is_nullable()
        );
        assert_eq!(label_name("labels.pod"), Some("pod"));
    }
}
