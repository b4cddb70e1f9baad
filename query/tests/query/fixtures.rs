use std::sync::Arc;

use firn_query::{QueryConfig, QueryEngine};
use firn_storage::testing::{ProfileBuilder, memory_store, pprof_write};
use firn_storage::{Nanos, SeqNo, StoreConfig, TenantId};

pub const SEC: i64 = 1_000_000_000;
pub const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

pub fn tenant(t: &str) -> TenantId {
    TenantId::new(t).expect("valid tenant")
}

pub async fn engine() -> QueryEngine {
    let store = memory_store(StoreConfig::default()).await;
    QueryEngine::new(Arc::new(store), QueryConfig::default()).expect("engine")
}

/// Writes a CPU profile with the given (root-first stack, samples) pairs.
pub fn write_cpu(
    engine: &QueryEngine,
    seq: u64,
    tenant: &str,
    labels: &[(&str, &str)],
    time: i64,
    stacks: &[(&[&str], i64)],
) {
    let mut b = ProfileBuilder::cpu().time(Nanos(time));
    for (stack, n) in stacks {
        b.sample(stack, &[*n, n * 10_000_000], &[]);
    }
    let mut all = vec![("__name__", "process_cpu")];
    all.extend_from_slice(labels);
    engine
        .store()
        .write(SeqNo(seq), pprof_write(tenant, &all, b.gzip(), Nanos(0)))
        .expect("valid write");
}
