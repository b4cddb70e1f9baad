//! A tenant's query limits, as the coordinator applies them to every query: the oldest time
//! it may read (its retention), the longest range a profile query may span, and the memory one
//! query may hold. The node supplies them through [`TenantPolicy`], from the limits the
//! cluster agreed on.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::DataFusionError;
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool, MemoryReservation};
use firn_storage::{Nanos, TenantId};

use crate::error::{Error, Result};

/// A tenant's limits on one query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantLimits {
    /// Rows older than this are not returned (retention).
    pub not_before: Option<Nanos>,
    /// The longest `[start, end)` of a profile query.
    pub max_range: Option<Nanos>,
    /// Bytes one query may hold at the coordinator.
    pub memory_bytes: Option<usize>,
}

/// Where the coordinator learns a tenant's limits.
pub trait TenantPolicy: Send + Sync + fmt::Debug {
    fn limits(&self, tenant: &TenantId) -> TenantLimits;
}

impl TenantLimits {
    /// `[start, end)` as the tenant may read it: refused past the longest range, then started
    /// no earlier than its retention allows (an empty range when all of it is older).
    pub fn scope(&self, start: Nanos, end: Nanos) -> Result<(Nanos, Nanos)> {
        if let Some(max) = self.max_range {
            let asked = end.0.saturating_sub(start.0);
            if asked > max.0 {
                return Err(Error::Limit(format!(
                    "the query spans {} s, the limit is {} s (max_query_range_secs)",
                    asked / 1_000_000_000,
                    max.0 / 1_000_000_000
                )));
            }
        }
        let start = match self.not_before {
            Some(floor) if start < floor => Nanos(floor.0.min(end.0)),
            _ => start,
        };
        Ok((start, end))
    }
}

/// A pool that lets one query hold at most `cap` bytes of a shared pool.
#[derive(Debug)]
pub(crate) struct CappedPool {
    inner: Arc<dyn MemoryPool>,
    cap: usize,
    used: AtomicUsize,
}

impl CappedPool {
    pub(crate) fn new(inner: Arc<dyn MemoryPool>, cap: usize) -> Self {
        Self {
            inner,
            cap,
            used: AtomicUsize::new(0),
        }
    }
}

impl fmt::Display for CappedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a query's share ({} bytes) of {}", self.cap, self.inner)
    }
}

impl MemoryPool for CappedPool {
    fn name(&self) -> &str {
        "firn tenant query"
    }

    fn register(&self, consumer: &datafusion::execution::memory_pool::MemoryConsumer) {
        self.inner.register(consumer);
    }

    fn unregister(&self, consumer: &datafusion::execution::memory_pool::MemoryConsumer) {
        self.inner.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.used.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
        self.used.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(
        &self,
        reservation: &MemoryReservation,
        additional: usize,
    ) -> datafusion::common::Result<()> {
        // Claimed here first, so concurrent partitions cannot overshoot the cap together.
        let claimed = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(additional)
                    .filter(|&total| total <= self.cap)
            });
        if let Err(used) = claimed {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the tenant's query memory limit, max_query_memory_bytes = {}, is reached \
                 ({used} bytes held, {additional} more asked for)",
                self.cap
            )));
        }
        if let Err(e) = self.inner.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::AcqRel);
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryConsumer};

    #[test]
    fn ranges_are_limited_then_clamped() {
        let limits = TenantLimits {
            not_before: Some(Nanos(100)),
            max_range: Some(Nanos(50)),
            memory_bytes: None,
        };
        assert_eq!(
            limits.scope(Nanos(120), Nanos(150)).expect("in"),
            (Nanos(120), Nanos(150))
        );
        assert_eq!(
            limits.scope(Nanos(90), Nanos(130)).expect("clamped"),
            (Nanos(100), Nanos(130))
        );
        assert_eq!(
            limits.scope(Nanos(10), Nanos(40)).expect("all old"),
            (Nanos(40), Nanos(40))
        );
        let err = limits.scope(Nanos(0), Nanos(51)).expect_err("too long");
        assert!(err.to_string().contains("max_query_range_secs"), "{err}");
        assert_eq!(
            TenantLimits::default()
                .scope(Nanos::MIN, Nanos::MAX)
                .expect("open")
                .0,
            Nanos::MIN
        );
    }

    #[test]
    fn a_capped_pool_refuses_past_its_share() {
        let shared: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1000));
        let pool: Arc<dyn MemoryPool> = Arc::new(CappedPool::new(shared.clone(), 100));
        let r = MemoryConsumer::new("test").register(&pool);
        r.try_grow(60).expect("within");
        let err = r.try_grow(60).expect_err("past the cap");
        assert!(
            err.to_string().contains("max_query_memory_bytes = 100"),
            "{err}"
        );
        assert_eq!(shared.reserved(), 60);
        r.free();
        assert_eq!((pool.reserved(), shared.reserved()), (0, 0));
    }
}
