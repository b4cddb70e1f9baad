//! `BlockScanExec`: the leaf of a plan that reads a tenant's rows from Parquet blocks. Each
//! block is read by its own small plan (the Parquet scan, under an exact filter only when the
//! block's metadata cannot prove that every row passes); a partition reads its share of the
//! blocks one after another, so a query over a thousand blocks holds `partitions` open readers,
//! not a thousand.
//!
//! Blocks store a sample's stack as an ordinal into the block's stack table, most as a step from
//! the sample before (`firn_storage::stack_codec`); this exec decodes the steps in file order,
//! then applies the row filter (after decoding: a step needs the rows before it), and turns the
//! ordinals back into the table's `stack_id` column: a dictionary whose keys are the ordinals and
//! whose values are the block's 16-byte ids, shared by every batch of the block (no copy per
//! row).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, DictionaryArray, Int32Array, RecordBatch, RecordBatchOptions,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{Int32Type, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PhysicalExpr, PlanProperties,
};
use firn_storage::BlockId;
use firn_storage::stack_codec::{StackDecoder, StackEncoding};
use futures::{StreamExt, TryStreamExt};

use crate::symbol_cache::SymbolCache;

/// How to read one block (one row group of it).
#[derive(Debug)]
pub struct BlockScan {
    pub block: BlockId,
    pub stack: StackEncoding,
    /// One partition reading the block's rows in file order: the projected file schema
    /// (`stack` where the table has `stack_id`), then the columns only `row_filter` needs. It
    /// may skip pages, never single rows.
    pub plan: Arc<dyn ExecutionPlan>,
    /// The exact filter, when the block's metadata cannot prove that every row passes.
    pub row_filter: Option<Arc<dyn PhysicalExpr>>,
    /// The projected columns: the first `columns` of `plan`'s output.
    pub columns: usize,
    /// Position of `series_id` among the projected columns, when projected: the file holds
    /// none (or one to ignore), so it is recomputed from the label columns, which `plan` reads
    /// after the projected ones.
    pub series_index: Option<usize>,
}

#[derive(Debug)]
pub struct BlockScanExec {
    blocks: Arc<Vec<BlockScan>>,
    symbols: Arc<SymbolCache>,
    /// Position of `stack_id` in the output, when projected.
    stack_index: Option<usize>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl BlockScanExec {
    /// Reads `blocks` as `schema` (the projected table schema) in up to `partitions` partitions.
    pub fn new(
        blocks: Vec<BlockScan>,
        symbols: Arc<SymbolCache>,
        schema: SchemaRef,
        partitions: usize,
    ) -> Self {
        let stack_index = schema.index_of(firn_storage::schema::STACK_ID).ok();
        let partitions = partitions.clamp(1, blocks.len().max(1));
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            blocks: Arc::new(blocks),
            symbols,
            stack_index,
            schema,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for BlockScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "BlockScanExec: blocks={}", self.blocks.len())
            }
            DisplayFormatType::TreeRender => write!(f, "blocks={}", self.blocks.len()),
        }
    }
}

impl ExecutionPlan for BlockScanExec {
    fn name(&self) -> &str {
        "BlockScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let partitions = self.properties.partitioning.partition_count();
        let mine: Vec<usize> = (partition..self.blocks.len()).step_by(partitions).collect();
        let blocks = self.blocks.clone();
        let symbols = self.symbols.clone();
        let schema = self.schema.clone();
        let stack_index = self.stack_index;
        let stream = futures::stream::iter(mine)
            .then(move |i| {
                let (blocks, symbols, schema, context) = (
                    blocks.clone(),
                    symbols.clone(),
                    schema.clone(),
                    context.clone(),
                );
                async move {
                    let scan = &blocks[i];
                    let stack_ids = match stack_index {
                        Some(_) => Some(
                            symbols
                                .stack_ids(&scan.block)
                                .await
                                .map_err(|e| DataFusionError::External(Box::new(e)))?,
                        ),
                        None => None,
                    };
                    let input = scan.plan.execute(0, context)?;
                    let mut decoder = StackDecoder::new(scan.stack);
                    let (row_filter, columns, series_index) =
                        (scan.row_filter.clone(), scan.columns, scan.series_index);
                    Ok::<_, DataFusionError>(
                        input
                            .map(move |batch| {
                                let mut batch = batch?;
                                if let Some(i) = stack_index {
                                    batch = decode_stack(batch, i, &mut decoder)?;
                                }
                                batch = filter_rows(batch, row_filter.as_ref())?;
                                // Ids only for the rows kept; then the columns read for the
                                // filter or the ids go.
                                if let Some(i) = series_index {
                                    batch = with_series_ids(batch, i)?;
                                }
                                if batch.num_columns() > columns {
                                    batch = batch.project(&(0..columns).collect::<Vec<_>>())?;
                                }
                                to_table_batch(batch, &schema, stack_index, stack_ids.as_ref())
                            })
                            .try_filter(|batch| std::future::ready(batch.num_rows() > 0)),
                    )
                }
            })
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

/// `batch` with its stack column (at `index`) decoded to ordinals.
fn decode_stack(
    batch: RecordBatch,
    index: usize,
    decoder: &mut StackDecoder,
) -> Result<RecordBatch> {
    let stored = int32_stack(batch.column(index))?;
    let ordinals = decoder
        .decode(stored)
        .map_err(|reason| DataFusionError::Execution(format!("corrupt block: {reason}")))?;
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(ordinals);
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// `batch` with the column at `index` replaced by each row's series id, from its labels.
fn with_series_ids(batch: RecordBatch, index: usize) -> Result<RecordBatch> {
    let ids = firn_storage::schema::series_ids(&batch)
        .map_err(|reason| DataFusionError::Execution(format!("series ids of a block: {reason}")))?;
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(ids);
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// The rows of `batch` that pass `row_filter`.
fn filter_rows(
    batch: RecordBatch,
    row_filter: Option<&Arc<dyn PhysicalExpr>>,
) -> Result<RecordBatch> {
    let Some(row_filter) = row_filter else {
        return Ok(batch);
    };
    let mask = row_filter.evaluate(&batch)?.into_array(batch.num_rows())?;
    let mask = mask.as_boolean_opt().ok_or_else(|| {
        DataFusionError::Internal(format!(
            "row filter gave {}, not booleans",
            mask.data_type()
        ))
    })?;
    Ok(filter_record_batch(&batch, mask)?)
}

fn int32_stack(column: &ArrayRef) -> Result<&Int32Array> {
    column.as_primitive_opt::<Int32Type>().ok_or_else(|| {
        DataFusionError::Internal(format!(
            "block stack column has type {}, not Int32",
            column.data_type()
        ))
    })
}

/// A block batch as the table's: the stack ordinals become dictionary keys into the block's ids
/// (checked in range, so a corrupt block is an error, not a panic).
fn to_table_batch(
    batch: RecordBatch,
    schema: &SchemaRef,
    stack_index: Option<usize>,
    stack_ids: Option<&ArrayRef>,
) -> Result<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    if let (Some(i), Some(ids)) = (stack_index, stack_ids) {
        let ordinals = int32_stack(&columns[i])?.clone();
        columns[i] = Arc::new(DictionaryArray::<Int32Type>::try_new(
            ordinals,
            ids.clone(),
        )?);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?)
}
