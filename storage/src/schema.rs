//! Column names and Arrow schemas of sample rows, shared by the buffer, blocks and queries.
//!
//! A sample row is flat: profile-level columns (repeated for each sample of a profile, and
//! dictionary- or run-length-encoded where they are stored) then sample columns. Labels are
//! dynamic columns `labels.<name>`, one per label name ever seen, null where a row lacks it.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

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

/// The schema of a block's Parquet file: [`sample_schema`] with the tenant, and the stack as an
/// `Int32` ordinal ([`STACK`]) where the table has [`STACK_ID`].
pub fn block_schema<'a>(label_names: impl IntoIterator<Item = &'a str>) -> SchemaRef {
    block_file_schema(&sample_schema(label_names, true))
}

/// `schema` with its [`STACK_ID`] field, if any, replaced by the block file's [`STACK`] ordinal
/// at the same position (so projections index both alike).
pub fn block_file_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.name() == STACK_ID {
                Field::new(STACK, DataType::Int32, false)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
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
