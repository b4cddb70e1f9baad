//! Active series: the series (profile type and labels) each tenant wrote to in the last
//! [`ACTIVE_WINDOW`], as one shard's leader admitted them. A tenant's limit is shared evenly by
//! the shards (series spread over them by hash), so each leader checks the writes it commits
//! against its share, before proposing them. A new leader starts counting afresh: for one
//! window after a leader change a tenant may hold up to twice its share on that shard.

use std::collections::HashMap;
use std::sync::Mutex;

use firn_storage::{Nanos, TenantId};

use crate::error::{Error, Result};

/// A series is active while it was written to this recently.
pub const ACTIVE_WINDOW: Nanos = Nanos(10 * 60 * 1_000_000_000);
/// Series one shard's tracker holds, over all tenants. Past it, new series are admitted
/// without being tracked (their tenants' limits go unchecked for them, and
/// `firn_tenancy_series_tracked` shows the cap): one tenant filling the tracker must not
/// refuse the others' writes.
pub const MAX_TRACKED: usize = 4_000_000;

#[derive(Debug, Default)]
struct TenantSeries {
    last_seen: HashMap<u64, i64>,
    swept: i64,
}

impl TenantSeries {
    fn sweep(&mut self, now: Nanos) -> usize {
        let before = self.last_seen.len();
        if now.0 - self.swept >= ACTIVE_WINDOW.0 / 8 {
            let horizon = now.0 - ACTIVE_WINDOW.0;
            self.last_seen.retain(|_, seen| *seen > horizon);
            self.swept = now.0;
        }
        before - self.last_seen.len()
    }
}

#[derive(Debug, Default)]
struct Inner {
    tenants: HashMap<TenantId, TenantSeries>,
    total: usize,
}

/// One shard's active series.
#[derive(Debug, Default)]
pub struct ActiveSeries {
    inner: Mutex<Inner>,
}

impl ActiveSeries {
    /// Admits a write of `series` (fingerprints) for `tenant`, whose share of active series on
    /// this shard is `limit` (0 = no limit), and marks them active.
    pub fn admit(&self, tenant: &TenantId, series: &[u64], limit: u64, now: Nanos) -> Result<()> {
        let mut guard = self.inner.lock().expect("series lock poisoned");
        let inner = &mut *guard;
        let entry = inner.tenants.entry(tenant.clone()).or_default();
        inner.total -= entry.sweep(now);
        let mut new: Vec<u64> = series
            .iter()
            .copied()
            .filter(|s| !entry.last_seen.contains_key(s))
            .collect();
        new.sort_unstable();
        new.dedup();
        let after = entry.last_seen.len() + new.len();
        if limit > 0 && after as u64 > limit {
            return Err(Error::Limit(format!(
                "tenant {:?} would have {after} active series on this shard, past its share \
                 {limit} of max_active_series (series written to in the last {} minutes)",
                tenant.as_str(),
                ACTIVE_WINDOW.0 / 60_000_000_000
            )));
        }
        for s in series {
            if let Some(seen) = entry.last_seen.get_mut(s) {
                *seen = now.0;
            } else if inner.total < MAX_TRACKED {
                entry.last_seen.insert(*s, now.0);
                inner.total += 1;
            }
        }
        Ok(())
    }

    /// Series tracked over all tenants (at most [`MAX_TRACKED`]).
    pub fn tracked(&self) -> usize {
        self.inner.lock().expect("series lock poisoned").total
    }

    /// Active series per tenant (idle ones swept first); tenants with none are dropped.
    pub fn counts(&self, now: Nanos) -> Vec<(TenantId, u64)> {
        let mut guard = self.inner.lock().expect("series lock poisoned");
        let inner = &mut *guard;
        let mut swept = 0;
        for t in inner.tenants.values_mut() {
            swept += t.sweep(now);
        }
        inner.total -= swept;
        inner.tenants.retain(|_, t| !t.last_seen.is_empty());
        inner
            .tenants
            .iter()
            .map(|(tenant, t)| (tenant.clone(), t.last_seen.len() as u64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_new_series_and_idle_ones_expire() {
        let tracker = ActiveSeries::default();
        let tenant = TenantId::new("acme".to_owned()).expect("id");
        tracker
            .admit(&tenant, &[1, 2, 2], 3, Nanos(0))
            .expect("two");
        tracker
            .admit(&tenant, &[1, 2, 3], 3, Nanos(1))
            .expect("three");
        let err = tracker
            .admit(&tenant, &[4], 3, Nanos(2))
            .expect_err("a fourth");
        assert!(err.to_string().contains("max_active_series"), "{err}");
        // Old series keep writing.
        tracker.admit(&tenant, &[3], 3, Nanos(3)).expect("known");
        // Past the window the idle ones go, and room comes back.
        let later = Nanos(ACTIVE_WINDOW.0 + 2);
        tracker.admit(&tenant, &[4], 3, later).expect("room again");
        assert_eq!(tracker.counts(later), vec![(tenant.clone(), 2)]);
        let other = TenantId::new("other".to_owned()).expect("id");
        tracker
            .admit(&other, &[1, 2, 3, 4, 5], 0, later)
            .expect("no limit");
    }
}
