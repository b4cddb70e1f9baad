//! The merge's partial aggregate: `SumByStackExec` sums values by stack id within each
//! partition of its input (so the sums run on every core, beside the scans that feed them) and
//! emits one small batch of `(stack_id, value)` per partition; [`StackSums`] folds those.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, Int64Array, RecordBatch,
};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::hash::BuildIdHasher;

/// Dictionaries of stack ids summed into at once; past it the oldest is folded into the map.
const OPEN_DICTIONARIES: usize = 8;

/// Sums of values by stack id. Every batch of a block shares one dictionary of ids, so values
/// are summed per dictionary key in a dense vector first and reach the map once per distinct
/// stack per block, not once per row.
#[derive(Debug, Default)]
///
/// A stack whose values sum to zero is left out: it adds nothing to any total.
pub struct StackSums {
    /// (dictionary values, sum per key)
    open: Vec<(ArrayRef, Vec<i64>)>,
    sums: HashMap<u128, i64, BuildIdHasher>,
}

impl StackSums {
    pub fn add(&mut self, ids: &ArrayRef, values: &Int64Array) -> Result<()> {
        let Some(dict) = ids.as_dictionary_opt::<Int32Type>() else {
            if let Some(fixed) = ids.as_fixed_size_binary_opt() {
                for (i, value) in values.values().iter().enumerate() {
                    let sum = self.sums.entry(id_of(fixed.value(i))?).or_default();
                    *sum = sum.saturating_add(*value);
                }
                return Ok(());
            }
            let plain = binary_ids(ids)?;
            for (i, value) in values.values().iter().enumerate() {
                let sum = self.sums.entry(id_of(plain.value(i))?).or_default();
                *sum = sum.saturating_add(*value);
            }
            return Ok(());
        };
        let position = self.open_dictionary(dict.values())?;
        let (_, per_key) = &mut self.open[position];
        for (&key, &value) in dict.keys().values().iter().zip(values.values().iter()) {
            let sum = &mut per_key[key as usize];
            *sum = sum.saturating_add(value);
        }
        Ok(())
    }

    /// Adds `values` to the stacks at `ordinals` of `ids` (a block's stack ids by ordinal), as
    /// a block's stack sums give them.
    pub fn add_ordinals(&mut self, ids: &ArrayRef, ordinals: &[u32], values: &[i64]) -> Result<()> {
        let position = self.open_dictionary(ids)?;
        let (_, per_key) = &mut self.open[position];
        for (&ordinal, &value) in ordinals.iter().zip(values) {
            let count = per_key.len();
            let sum = per_key
                .get_mut(ordinal as usize)
                .ok_or_else(|| Error::Execution {
                    source: DataFusionError::Internal(format!(
                        "stack sums name stack {ordinal} of a block with {count}"
                    )),
                })?;
            *sum = sum.saturating_add(value);
        }
        Ok(())
    }

    /// The index in `open` of the sums per key of `dictionary` (opened, folding the oldest
    /// past [`OPEN_DICTIONARIES`], when not open yet).
    fn open_dictionary(&mut self, dictionary: &ArrayRef) -> Result<usize> {
        if let Some(p) = self
            .open
            .iter()
            .position(|(d, _)| Arc::ptr_eq(d, dictionary))
        {
            return Ok(p);
        }
        binary_ids(dictionary)?;
        if self.open.len() == OPEN_DICTIONARIES {
            let (d, per_key) = self.open.remove(0);
            self.fold(&d, per_key)?;
        }
        self.open
            .push((dictionary.clone(), vec![0; dictionary.len()]));
        Ok(self.open.len() - 1)
    }

    fn fold(&mut self, dictionary: &ArrayRef, per_key: Vec<i64>) -> Result<()> {
        let ids = binary_ids(dictionary)?;
        for (key, value) in per_key.into_iter().enumerate() {
            if value != 0 {
                let sum = self.sums.entry(id_of(ids.value(key))?).or_default();
                *sum = sum.saturating_add(value);
            }
        }
        Ok(())
    }

    /// Bytes held, for the memory pool.
    pub fn bytes(&self) -> usize {
        self.sums.capacity() * 40 + self.open.iter().map(|(_, v)| 8 * v.len()).sum::<usize>()
    }

    pub fn finish(mut self) -> Result<HashMap<u128, i64, BuildIdHasher>> {
        for (d, per_key) in std::mem::take(&mut self.open) {
            self.fold(&d, per_key)?;
        }
        self.sums.retain(|_, v| *v != 0);
        Ok(self.sums)
    }
}

fn binary_ids(ids: &ArrayRef) -> Result<&datafusion::arrow::array::BinaryArray> {
    ids.as_binary_opt::<i32>().ok_or_else(|| {
        Error::InvalidQuery(format!(
            "stack ids have type {}, not binary",
            ids.data_type()
        ))
    })
}

fn id_of(bytes: &[u8]) -> Result<u128> {
    <[u8; 16]>::try_from(bytes)
        .map(u128::from_be_bytes)
        .map_err(|_| Error::InvalidQuery(format!("a stack id is {} bytes, not 16", bytes.len())))
}

/// Sums by stack within each partition of `input`, whose first two columns are `stack_id`
/// (16-byte ids, dictionary-encoded or not) and `value` (Int64).
#[derive(Debug)]
pub struct SumByStackExec {
    input: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl SumByStackExec {
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                firn_storage::schema::STACK_ID,
                DataType::FixedSizeBinary(16),
                false,
            ),
            Field::new(firn_storage::schema::VALUE, DataType::Int64, false),
        ]));
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            input.properties().partitioning.clone(),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input,
            schema,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for SumByStackExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SumByStackExec")
    }
}

impl ExecutionPlan for SumByStackExec {
    fn name(&self) -> &str {
        "SumByStackExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<TreeNodeRecursion>,
    ) -> datafusion::error::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(Self::new(input))),
            Err(_) => Err(DataFusionError::Internal(
                "SumByStackExec takes one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context.clone())?;
        let reservation = MemoryConsumer::new(format!("SumByStackExec[{partition}]"))
            .register(context.memory_pool());
        let schema = self.schema.clone();
        let sum = async move {
            let mut sums = StackSums::default();
            while let Some(batch) = input.next().await {
                let batch = batch?;
                let values = batch
                    .column(1)
                    .as_primitive_opt::<Int64Type>()
                    .ok_or_else(|| {
                        DataFusionError::Internal("SumByStackExec values are not Int64".into())
                    })?;
                sums.add(batch.column(0), values).map_err(external)?;
                reservation.try_resize(sums.bytes())?;
            }
            let sums = sums.finish().map_err(external)?;
            let mut bytes = Vec::with_capacity(16 * sums.len());
            for id in sums.keys() {
                bytes.extend_from_slice(&id.to_be_bytes());
            }
            let ids = FixedSizeBinaryArray::try_new(16, bytes.into(), None)?;
            let values = Int64Array::from_iter_values(sums.values().copied());
            Ok(RecordBatch::try_new(
                schema,
                vec![Arc::new(ids), Arc::new(values)],
            )?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(sum),
        )))
    }
}

fn external(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
