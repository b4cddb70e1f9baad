//! Ingestion rate limits: a token bucket per tenant on each node, refilled at the node's share
//! of the tenant's rate (the rate divided by the cluster's active nodes: clients spread over
//! the nodes, as Pyroscope's and Mimir's global strategy assumes) and holding up to the burst.
//! A refused write costs nothing but this check: it is refused before it is decoded.
//!
//! A tenant whose bucket cannot hold its next write is first made to wait, before its body is
//! read ([`RateLimiter::hold`]): up to [`MAX_HOLD`], until the bucket could hold it. A flood of
//! writes past the rate then costs the node sleeping connections, not the receipt of bodies it
//! will refuse, and the other tenants keep the cores.

use std::collections::HashMap;
use std::sync::Mutex;

use firn_storage::{Nanos, TenantId};

use crate::error::{Error, Result};

/// The longest a write waits for its tenant's bucket before it is read.
pub const MAX_HOLD: std::time::Duration = std::time::Duration::from_secs(1);

/// Buckets kept at most; past it, full buckets (tenants that are not spending) are dropped,
/// which forgets nothing: a new bucket starts full too.
const MAX_BUCKETS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Nanos,
}

/// One node's buckets.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

/// A tenant's rate as this node applies it.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// The tenant's cluster-wide bytes per second (0 = no limit).
    pub bytes_per_sec: u64,
    pub burst: u64,
    /// Active nodes sharing the rate.
    pub nodes: usize,
}

impl RateLimiter {
    /// Takes `bytes` from the tenant's bucket, or says how it is over its rate.
    pub fn take(&self, tenant: &TenantId, bytes: u64, rate: Rate, now: Nanos) -> Result<()> {
        if rate.bytes_per_sec == 0 {
            return Ok(());
        }
        let share = rate.bytes_per_sec as f64 / rate.nodes.max(1) as f64;
        let burst = rate.burst as f64;
        if bytes > rate.burst {
            return Err(Error::Limit(format!(
                "a write of {bytes} bytes is larger than tenant {:?}'s burst, \
                 ingestion_burst_bytes = {}",
                tenant.as_str(),
                rate.burst
            )));
        }
        let mut buckets = self.buckets.lock().expect("rate lock poisoned");
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(tenant) {
            buckets.retain(|_, b| refilled(b, share, burst, now) < burst);
            if buckets.len() >= MAX_BUCKETS {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        bucket.tokens = refilled(bucket, share, burst, now);
        bucket.last = Nanos(bucket.last.0.max(now.0));
        if bucket.tokens < bytes as f64 {
            return Err(Error::Limit(format!(
                "tenant {:?} is over its ingestion rate: ingestion_rate_bytes = {} bytes/s \
                 ({:.0} bytes/s on each of {} nodes), ingestion_burst_bytes = {}; retry later",
                tenant.as_str(),
                rate.bytes_per_sec,
                share,
                rate.nodes.max(1),
                rate.burst
            )));
        }
        bucket.tokens -= bytes as f64;
        Ok(())
    }
}

impl RateLimiter {
    /// Tenants with a bucket on this node (at most 100,000).
    pub fn len(&self) -> usize {
        self.buckets.lock().expect("rate lock poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long a write of about `bytes` (its request's `Content-Length`) should wait before
    /// it is read: until the tenant's bucket could hold it, at most [`MAX_HOLD`]; `None` when
    /// it may go on now. Takes nothing: the write is checked exactly once it is decoded.
    pub fn hold(
        &self,
        tenant: &TenantId,
        bytes: u64,
        rate: Rate,
        now: Nanos,
    ) -> Option<std::time::Duration> {
        if rate.bytes_per_sec == 0 {
            return None;
        }
        let share = rate.bytes_per_sec as f64 / rate.nodes.max(1) as f64;
        let burst = rate.burst as f64;
        // The body is about the profile's size (larger for base64 in JSON, smaller under
        // Content-Encoding: gzip); the exact check follows once it is decoded.
        let needed = (bytes as f64).min(burst);
        let buckets = self.buckets.lock().expect("rate lock poisoned");
        let tokens = buckets
            .get(tenant)
            .map_or(burst, |b| refilled(b, share, burst, now));
        if tokens >= needed {
            return None;
        }
        let wait = std::time::Duration::from_secs_f64((needed - tokens) / share);
        Some(wait.min(MAX_HOLD))
    }
}

fn refilled(bucket: &Bucket, share: f64, burst: f64, now: Nanos) -> f64 {
    let elapsed = (now.0 - bucket.last.0).max(0) as f64 / 1e9;
    (bucket.tokens + elapsed * share).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn a_bucket_refills_at_the_nodes_share() {
        let limiter = RateLimiter::default();
        let tenant = TenantId::new("noisy".to_owned()).expect("id");
        let rate = Rate {
            bytes_per_sec: 2000,
            burst: 1000,
            nodes: 2,
        };
        limiter
            .take(&tenant, 1000, rate, Nanos(0))
            .expect("the burst");
        let err = limiter.take(&tenant, 1, rate, Nanos(0)).expect_err("empty");
        assert!(
            err.to_string().contains("ingestion_rate_bytes = 2000"),
            "{err}"
        );
        // 1000 bytes/s on this node: half a second refills 500.
        limiter
            .take(&tenant, 500, rate, Nanos(SEC / 2))
            .expect("refilled");
        assert!(limiter.take(&tenant, 10, rate, Nanos(SEC / 2)).is_err());
        // Never more than the burst, however long it waits.
        limiter
            .take(&tenant, 1000, rate, Nanos(100 * SEC))
            .expect("full");
        assert!(limiter.take(&tenant, 1, rate, Nanos(100 * SEC)).is_err());
        let err = limiter
            .take(&tenant, 5000, rate, Nanos(200 * SEC))
            .expect_err("past the burst");
        assert!(
            err.to_string().contains("ingestion_burst_bytes = 1000"),
            "{err}"
        );
        // Another tenant is untouched; no limit means no bucket.
        let quiet = TenantId::new("quiet".to_owned()).expect("id");
        limiter
            .take(&quiet, 1000, rate, Nanos(0))
            .expect("own bucket");
        let unlimited = Rate {
            bytes_per_sec: 0,
            ..rate
        };
        limiter
            .take(&tenant, 1 << 40, unlimited, Nanos(0))
            .expect("no limit");
    }

    #[test]
    fn an_empty_bucket_holds_the_next_write_until_it_could_fit() {
        let limiter = RateLimiter::default();
        let tenant = TenantId::new("noisy".to_owned()).expect("id");
        let rate = Rate {
            bytes_per_sec: 1000,
            burst: 1000,
            nodes: 1,
        };
        assert_eq!(
            limiter.hold(&tenant, 800, rate, Nanos(0)),
            None,
            "a new bucket is full"
        );
        limiter
            .take(&tenant, 1000, rate, Nanos(0))
            .expect("the burst");
        // An 800-byte body waits for 800 bytes: 0.8 s of refill.
        let wait = limiter.hold(&tenant, 800, rate, Nanos(0)).expect("held");
        assert_eq!(wait.as_millis(), 800);
        assert_eq!(limiter.hold(&tenant, 800, rate, Nanos(SEC)), None);
        // Never longer than MAX_HOLD; never for a tenant without a rate.
        let slow = Rate {
            bytes_per_sec: 1,
            ..rate
        };
        limiter
            .take(&tenant, 1000, rate, Nanos(SEC))
            .expect("refilled at the fast rate");
        assert_eq!(limiter.hold(&tenant, 800, slow, Nanos(SEC)), Some(MAX_HOLD));
        let unlimited = Rate {
            bytes_per_sec: 0,
            ..rate
        };
        assert_eq!(limiter.hold(&tenant, 800, unlimited, Nanos(SEC)), None);
    }
}
