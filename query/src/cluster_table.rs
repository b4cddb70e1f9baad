//! `ClusterTable`: the tenant's samples over every shard, for SQL at a coordinator. Its scan
//! is a [`ShardExchangeExec`] of [`Fragment::Scan`]s: each shard applies the filters it
//! understands exactly (time, profile type, delta, label equality: the same rules as
//! [`crate::table::SampleTable`]) and sends the projected rows; DataFusion evaluates the rest
//! above the exchange.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use firn_storage::{Nanos, TenantId, schema};

use crate::exchange::{ReadPoint, ShardExchangeExec, ShardSource};
use crate::fragment::{Fragment, ScanSpec};
use crate::table::{is_exact, scan_filter};

/// One tenant's samples on every shard.
#[derive(Debug)]
pub struct ClusterTable {
    source: Arc<dyn ShardSource>,
    tenant: TenantId,
    points: Vec<ReadPoint>,
    labels: Vec<String>,
    schema: SchemaRef,
    /// Rows older than this are never read (the tenant's retention).
    not_before: Option<Nanos>,
}

impl ClusterTable {
    /// `labels`: every label name the tenant's rows have on any shard.
    pub fn new(
        source: Arc<dyn ShardSource>,
        tenant: TenantId,
        points: Vec<ReadPoint>,
        labels: Vec<String>,
    ) -> Self {
        let schema = schema::sample_schema(labels.iter().map(String::as_str), false);
        Self {
            source,
            tenant,
            points,
            labels,
            schema,
            not_before: None,
        }
    }

    /// Reads no row older than `floor`, whatever the query says.
    pub fn not_before(mut self, floor: Option<Nanos>) -> Self {
        self.not_before = floor;
        self
    }
}

#[async_trait]
impl TableProvider for ClusterTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if is_exact(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        // Shards send at least one column, so rows can be counted (`count(*)`).
        let sent: Vec<usize> = if wanted.is_empty() {
            vec![self.schema.index_of(schema::TIME)?]
        } else {
            wanted.clone()
        };
        let columns: Vec<String> = sent
            .iter()
            .map(|&i| self.schema.field(i).name().clone())
            .collect();
        let mut filter = ScanSpec::from(&scan_filter(filters));
        if let Some(floor) = self.not_before {
            filter.start = filter.start.max(floor);
            filter.end = filter.end.max(filter.start);
        }
        let fragment = Fragment::Scan {
            columns,
            labels: self.labels.clone(),
            filter,
        };
        let exchange: Arc<dyn ExecutionPlan> = Arc::new(ShardExchangeExec::new(
            self.source.clone(),
            self.tenant.clone(),
            fragment,
            self.points.clone(),
            Arc::new(self.schema.project(&sent)?),
        ));
        if wanted.is_empty() {
            return Ok(Arc::new(ProjectionExec::try_new(
                Vec::<(Arc<dyn datafusion::physical_expr::PhysicalExpr>, String)>::new(),
                exchange,
            )?));
        }
        Ok(exchange)
    }
}
