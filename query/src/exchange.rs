//! The exchange between a coordinator and the shards: [`ShardSource`] runs a [`Fragment`] on
//! a replica of a shard (the node implements it: locally, or over Arrow Flight), and
//! [`ShardExchangeExec`] is the DataFusion plan node with one partition per shard.
//!
//! Why not `datafusion-distributed`: it ships serialised physical plans to stateless workers.
//! A shard's rows live partly in its replicas' memory (the unflushed buffer), so its scan must
//! be planned on the replica, against the state it has applied, after waiting for the shard's
//! read index; and a replica that fails is replaced by another replica of the same shard, not
//! by any worker. A fragment is the unit that carries exactly that: what to compute, for which
//! shard, from which applied index.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PhysicalExpr, PlanProperties,
};
use firn_storage::{ShardId, TenantId};
use futures::StreamExt;

use crate::error::Result;
use crate::fragment::{Fragment, FragmentOutput};

/// Where a read of one shard starts from: the index a replica must have applied to see every
/// write acknowledged before the query began (its leader's read index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReadPoint {
    pub shard: ShardId,
    pub applied: u64,
}

/// The shards of the data, as a coordinator reaches them.
#[async_trait::async_trait]
pub trait ShardSource: fmt::Debug + Send + Sync {
    /// Every shard, with the point a read started now must see.
    async fn read_points(&self) -> Result<Vec<ReadPoint>>;

    /// Runs `fragment` for `tenant` on a replica of `at.shard` that has applied `at.applied`;
    /// another replica is tried if one fails.
    async fn execute(
        &self,
        at: ReadPoint,
        tenant: &TenantId,
        fragment: &Fragment,
    ) -> Result<FragmentOutput>;
}

/// One partition per shard: each runs the fragment on that shard and streams its batches.
pub struct ShardExchangeExec {
    source: Arc<dyn ShardSource>,
    tenant: TenantId,
    fragment: Fragment,
    points: Vec<ReadPoint>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for ShardExchangeExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardExchangeExec")
            .field("shards", &self.points.len())
            .finish()
    }
}

impl ShardExchangeExec {
    /// `schema` is what every shard answers with.
    pub fn new(
        source: Arc<dyn ShardSource>,
        tenant: TenantId,
        fragment: Fragment,
        points: Vec<ReadPoint>,
        schema: SchemaRef,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(points.len().max(1)),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            source,
            tenant,
            fragment,
            points,
            schema,
            properties,
        }
    }

    /// The shard partition `i` reads.
    pub fn point(&self, partition: usize) -> Option<ReadPoint> {
        self.points.get(partition).copied()
    }
}

impl DisplayAs for ShardExchangeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.fragment {
            Fragment::MergeSums { .. } => "merge sums",
            Fragment::Symbols { .. } => "symbols",
            Fragment::Series { .. } => "series",
            Fragment::LabelNames { .. } => "label names",
            Fragment::LabelValues { .. } => "label values",
            Fragment::ProfileTypes { .. } => "profile types",
            Fragment::Columns => "columns",
            Fragment::Scan { .. } => "scan",
        };
        write!(
            f,
            "ShardExchangeExec: {kind} on {} shards",
            self.points.len()
        )
    }
}

impl ExecutionPlan for ShardExchangeExec {
    fn name(&self) -> &str {
        "ShardExchangeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<TreeNodeRecursion>,
    ) -> datafusion::error::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let schema = self.schema.clone();
        let Some(point) = self.point(partition) else {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::empty(),
            )));
        };
        let (source, tenant, fragment) = (
            self.source.clone(),
            self.tenant.clone(),
            self.fragment.clone(),
        );
        let stream = futures::stream::once(async move {
            source
                .execute(point, &tenant, &fragment)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))
        })
        .map(|output| match output {
            Ok(out) => futures::stream::iter(out.batches.into_iter().map(Ok)).boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}
