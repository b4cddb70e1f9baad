//! `BufferScanExec`: the leaf of a plan that reads a tenant's rows from a buffer snapshot,
//! lazily, one write's chunk at a time, materialising only the projected columns.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PhysicalExpr, PlanProperties,
};
use firn_storage::TenantId;
use firn_storage::buffer::BufferSnapshot;
use firn_storage::chunk::Chunk;
use firn_storage::filter::ScanFilter;
use futures::StreamExt;

#[derive(Debug)]
pub struct BufferScanExec {
    chunks: Vec<Arc<Chunk>>,
    buffer: BufferSnapshot,
    filter: ScanFilter,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl BufferScanExec {
    /// Reads `tenant`'s rows of `buffer` that may pass `filter`, as `schema` (the projected
    /// sample schema).
    pub fn new(
        tenant: &TenantId,
        buffer: BufferSnapshot,
        filter: ScanFilter,
        schema: SchemaRef,
    ) -> Self {
        let chunks = buffer.tenant_chunks(tenant).cloned().collect();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            chunks,
            buffer,
            filter,
            schema,
            properties: Arc::new(properties),
        }
    }

    /// True when the snapshot holds no chunk of the tenant.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

impl DisplayAs for BufferScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "BufferScanExec: chunks={}", self.chunks.len())
            }
            DisplayFormatType::TreeRender => write!(f, "chunks={}", self.chunks.len()),
        }
    }
}

impl ExecutionPlan for BufferScanExec {
    fn name(&self) -> &str {
        "BufferScanExec"
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
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let batch_rows = context.session_config().batch_size();
        let (buffer, filter, schema) = (
            self.buffer.clone(),
            self.filter.clone(),
            self.schema.clone(),
        );
        let stream = futures::stream::iter(self.chunks.clone()).flat_map(move |chunk| {
            let batches = match buffer.scan_chunk(&chunk, &filter, &schema, batch_rows) {
                Ok(batches) => batches.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(DataFusionError::External(Box::new(e)))],
            };
            futures::stream::iter(batches)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}
