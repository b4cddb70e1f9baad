//! Tenancy: who may call what ([`auth`]), the tenants and tokens the meta group records
//! ([`registry`]), the limits each tenant is held to ([`limits`], enforced by [`rate`] at
//! admission, by [`series`] at each shard's leader, by the query coordinator and by the
//! retention loop), and what each tenant used ([`usage`]).
//!
//! ```text
//!  request ─► auth: caller, tenant bound ─► write: max_profile_bytes, rate ─► normalise with
//!             the tenant's label and size limits ─► shard leader: active series ─► commit
//!                                       ─► query: range, retention floor, memory share
//!  retention loop (shard leaders): blocks wholly past their tenants' retention ─► dropped
//!  usage: counted per node per hour ─► usage/<day>/node-<id>.json every --usage-flush-secs
//! ```

pub mod auth;
pub mod limits;
pub mod metering;
pub mod rate;
pub mod registry;
pub mod retention;
pub mod series;
pub mod usage;

use std::collections::BTreeMap;
use std::sync::Arc;

use firn_query::{TenantLimits, TenantPolicy};
use firn_storage::clock::Clock;
use firn_storage::{Nanos, TenantId};
use tokio::sync::watch;

use crate::cluster::meta::MetaState;
use auth::Authenticator;
use limits::Limits;
use rate::RateLimiter;
use usage::Usage;

/// The node's tenancy services.
#[derive(Debug)]
pub struct Tenancy {
    pub auth: Authenticator,
    pub rates: RateLimiter,
    pub usage: Usage,
    /// One usage range query at a time on a node (each reads many objects).
    pub usage_queries: tokio::sync::Semaphore,
    pub clock: Arc<dyn Clock>,
    meta: watch::Receiver<Arc<MetaState>>,
}

impl Tenancy {
    pub fn new(
        auth: Authenticator,
        usage: Usage,
        clock: Arc<dyn Clock>,
        meta: watch::Receiver<Arc<MetaState>>,
    ) -> Self {
        Self {
            auth,
            rates: RateLimiter::default(),
            usage,
            usage_queries: tokio::sync::Semaphore::new(1),
            clock,
            meta,
        }
    }

    pub fn now(&self) -> Nanos {
        self.clock.now()
    }

    /// The limits in force for `tenant`, as this node last applied the meta state.
    pub fn limits(&self, tenant: &TenantId) -> Limits {
        self.meta.borrow().tenancy.limits(tenant.as_str())
    }

    /// Each tenant's retention, for the retention loop.
    pub fn retentions(&self) -> impl Fn(&TenantId) -> Option<Nanos> + Send + Sync + 'static {
        let state = self.meta.borrow().clone();
        move |tenant: &TenantId| {
            state
                .tenancy
                .limits(tenant.as_str())
                .retention_nanos()
                .map(Nanos)
        }
    }

    /// Records the gauges of the shards this node leads (active series, stored bytes).
    pub fn observe(&self, gauges: &BTreeMap<TenantId, (u64, u64)>) {
        self.usage.observe(gauges, self.now());
    }
}

/// A clock read from a file holding unix seconds, for tests that move a live node's time
/// (`FIRN_TEST_CLOCK_FILE`): retention, rate limits and usage hours follow it. The system's
/// time when the file cannot be read.
#[derive(Debug)]
pub struct FileClock(pub std::path::PathBuf);

impl Clock for FileClock {
    fn now(&self) -> Nanos {
        std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .map(|secs| Nanos(secs.saturating_mul(1_000_000_000)))
            .unwrap_or_else(|| firn_storage::clock::SystemClock.now())
    }
}

/// The clock of tenancy: the system's, or a test's file clock.
pub fn clock() -> Arc<dyn Clock> {
    match std::env::var_os("FIRN_TEST_CLOCK_FILE") {
        Some(path) => Arc::new(FileClock(path.into())),
        None => Arc::new(firn_storage::clock::SystemClock),
    }
}

impl TenantPolicy for Tenancy {
    fn limits(&self, tenant: &TenantId) -> TenantLimits {
        let limits = Tenancy::limits(self, tenant);
        let now = self.now();
        TenantLimits {
            not_before: limits
                .retention_nanos()
                .map(|keep| Nanos(now.0.saturating_sub(keep))),
            max_range: (limits.max_query_range_secs > 0).then(|| {
                Nanos(
                    i64::try_from(limits.max_query_range_secs.saturating_mul(1_000_000_000))
                        .unwrap_or(i64::MAX),
                )
            }),
            memory_bytes: usize::try_from(limits.max_query_memory_bytes).ok(),
        }
    }
}
