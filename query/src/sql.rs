//! Read-only SQL, shared by the engine of one store and the coordinator of many shards:
//! statements other than queries are refused, results are limited, and the `stacks` table
//! shows the frames of the tenant's own stacks.

use std::sync::Arc;

use datafusion::arrow::array::{BinaryBuilder, Int32Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::prelude::{DataFrame, SQLOptions, SessionContext};
use firn_storage::schema;

use crate::error::{Error, Result};
use crate::merged::MergedProfile;

/// Whether a statement may read the `stacks` table (building it costs a merge of everything).
pub(crate) fn mentions_stacks(sql: &str) -> bool {
    sql.to_ascii_lowercase().contains("stacks")
}

/// Plans `sql` on `ctx` as a read-only query returning at most `max_rows + 1` rows (one more,
/// so an answer past the limit is told apart from one at it).
pub(crate) async fn plan_read_only(
    ctx: &SessionContext,
    sql: &str,
    max_rows: usize,
    map_err: impl Fn(DataFusionError) -> Error,
) -> Result<DataFrame> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx
        .sql_with_options(sql, options)
        .await
        .map_err(|e| match e.find_root() {
            DataFusionError::Plan(m)
                if m.contains("not supported") || m.contains("DDL") || m.contains("DML") =>
            {
                Error::ReadOnly(m.clone())
            }
            _ => map_err(e),
        })?;
    // EXPLAIN must stay the root of its plan; its output is small.
    if matches!(
        df.logical_plan(),
        datafusion::logical_expr::LogicalPlan::Explain(_)
            | datafusion::logical_expr::LogicalPlan::Analyze(_)
    ) {
        return Ok(df);
    }
    df.limit(0, Some(max_rows + 1)).map_err(map_err)
}

/// Fails an answer of more than `max_rows` rows.
pub(crate) fn check_rows(batches: &[RecordBatch], max_rows: usize) -> Result<()> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows > max_rows {
        return Err(Error::TooManyRows { limit: max_rows });
    }
    Ok(())
}

/// `stacks(stack_id, depth, function)`: the frames of every stack of `merged`, root first
/// (depth 0 = root), for joining with `samples` in SQL. Built from the tenant's own merge, so
/// it never shows another tenant's frames. Its memory is reserved in `pool` (held by the
/// returned reservation).
pub(crate) fn stacks_table(
    merged: &MergedProfile,
    pool: &Arc<dyn MemoryPool>,
    map_err: impl Fn(DataFusionError) -> Error,
) -> Result<(RecordBatch, MemoryReservation)> {
    let reservation = MemoryConsumer::new("firn stacks table").register(pool);
    let mut ids = BinaryBuilder::new();
    let mut depths = Int32Builder::new();
    let mut functions = StringBuilder::new();
    for &(stack, _) in &merged.stacks {
        let id = merged.symbols.stack(stack).id.to_bytes();
        let frames = merged.frames_root_first(stack);
        // Reserved before the rows are built: 16-byte id, depth, name and offsets a frame.
        let bytes: usize = frames.iter().map(|f| 28 + f.len()).sum();
        reservation.try_grow(bytes).map_err(&map_err)?;
        for (depth, f) in frames.iter().enumerate() {
            ids.append_value(id);
            depths.append_value(depth as i32);
            functions.append_value(f);
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(schema::STACK_ID, DataType::Binary, false),
        Field::new("depth", DataType::Int32, false),
        Field::new("function", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(ids.finish()),
            Arc::new(depths.finish()),
            Arc::new(functions.finish()),
        ],
    )
    .map_err(|e| Error::Execution { source: e.into() })?;
    Ok((batch, reservation))
}
