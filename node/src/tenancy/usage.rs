//! Usage metering for billing: what each tenant ingested, stored and queried, per hour. Each
//! node counts what it did (the writes it admitted, the fragments it scanned, the shards it
//! leads) into a ledger of hourly buckets and writes it to the object store every
//! `--usage-flush-secs` (60 s), one object per node per day; totals over a time range sum every node's objects. `/metrics`
//! shows the same counters since the process started.
//!
//! ```text
//!  usage/2026-12-01/node-3.json = {"node": 3, "hours": {"14": {"acme": Counters, ...}, ...}}
//! ```
//!
//! Counters add up over hours and nodes; the gauges (active series, stored bytes) are summed
//! over nodes within an hour and the largest hour is reported for a range.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use firn_storage::{Nanos, TenantId};

use crate::error::{Error, Result};
use crate::ids::NodeId;

/// Tenants one hour of a node's ledger (and `/metrics`) names at most; the rest are summed
/// under [`OTHER`].
pub const MAX_TENANTS_PER_HOUR: usize = 10_000;
/// Where usage past [`MAX_TENANTS_PER_HOUR`] goes: not a valid tenant id, so no tenant's
/// own usage is ever summed into it.
pub const OTHER: &str = "~other";
/// The largest usage record read back (a day of 10,000 tenants is far below it).
const MAX_RECORD_BYTES: u64 = 256 << 20;
/// Days a range may span.
pub const MAX_RANGE_DAYS: i64 = 400;

const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;

/// One tenant's usage in one hour (or a range).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Profile bytes of admitted writes as received (see `Limits::ingestion_rate_bytes`).
    #[serde(default)]
    pub ingested_bytes: u64,
    #[serde(default)]
    pub ingested_samples: u64,
    #[serde(default)]
    pub ingested_profiles: u64,
    #[serde(default)]
    pub queries: u64,
    /// Bytes of the tenant's blocks (its share of each) the queries' time ranges covered;
    /// buffered rows are not counted.
    #[serde(default)]
    pub scanned_bytes: u64,
    /// Gauge: series written to in the last ten minutes.
    #[serde(default)]
    pub active_series: u64,
    /// Gauge: bytes of the tenant's rows in blocks.
    #[serde(default)]
    pub stored_bytes: u64,
}

impl Counters {
    /// Adds every field, gauges included (they sum over nodes and shards).
    pub fn add(&mut self, other: &Counters) {
        self.ingested_bytes += other.ingested_bytes;
        self.ingested_samples += other.ingested_samples;
        self.ingested_profiles += other.ingested_profiles;
        self.queries += other.queries;
        self.scanned_bytes += other.scanned_bytes;
        self.active_series += other.active_series;
        self.stored_bytes += other.stored_bytes;
    }

    /// Adds the counters; keeps the larger gauges.
    fn add_over_time(&mut self, other: &Counters) {
        let (series, stored) = (self.active_series, self.stored_bytes);
        self.add(other);
        self.active_series = series.max(other.active_series);
        self.stored_bytes = stored.max(other.stored_bytes);
    }
}

type Hour = BTreeMap<String, Counters>;

/// One node's usage on one day.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DayRecord {
    pub node: u64,
    /// Hour of the day (0-23) → tenant → usage.
    pub hours: BTreeMap<u8, Hour>,
}

#[derive(Debug, Default)]
struct Ledger {
    /// Day number since the epoch → the day's record.
    days: BTreeMap<i64, DayRecord>,
    /// Days changed since they were last written.
    dirty: std::collections::BTreeSet<i64>,
    /// Since the process started, for `/metrics`.
    totals: Hour,
}

/// This node's meter.
#[derive(Debug)]
pub struct Usage {
    node: NodeId,
    ledger: Mutex<Ledger>,
    /// One writer at a time, so a later snapshot of a day never lands before an earlier one.
    persisting: tokio::sync::Mutex<()>,
}

fn day_hour(now: Nanos) -> (i64, u8) {
    let day = now.0.div_euclid(DAY);
    (day, (now.0.rem_euclid(DAY) / HOUR) as u8)
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01), proleptic Gregorian.
pub fn date(day: i64) -> String {
    let (y, m, d) = crate::time::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

fn day_prefix(prefix: &Path, day: i64) -> Path {
    prefix.clone().join("usage").join(date(day))
}

fn entry<'a>(hour: &'a mut Hour, tenant: &TenantId) -> &'a mut Counters {
    if !hour.contains_key(tenant.as_str()) && hour.len() >= MAX_TENANTS_PER_HOUR {
        return hour.entry(OTHER.to_owned()).or_default();
    }
    hour.entry(tenant.as_str().to_owned()).or_default()
}

impl Usage {
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            ledger: Mutex::new(Ledger::default()),
            persisting: tokio::sync::Mutex::new(()),
        }
    }

    /// Adds to the tenant's counters in the hour of `now`.
    pub fn record(&self, tenant: &TenantId, now: Nanos, change: impl Fn(&mut Counters)) {
        let (day, hour) = day_hour(now);
        let mut ledger = self.ledger.lock().expect("usage lock poisoned");
        let record = ledger.days.entry(day).or_insert_with(|| DayRecord {
            node: self.node.0,
            hours: BTreeMap::new(),
        });
        change(entry(record.hours.entry(hour).or_default(), tenant));
        ledger.dirty.insert(day);
        change(entry(&mut ledger.totals, tenant));
    }

    /// Sets the tenants' gauges in the hour of `now` to the larger of what they were and
    /// `gauges` (active series, stored bytes); tenants not named keep theirs.
    pub fn observe(&self, gauges: &BTreeMap<TenantId, (u64, u64)>, now: Nanos) {
        let (day, hour) = day_hour(now);
        let mut ledger = self.ledger.lock().expect("usage lock poisoned");
        let record = ledger.days.entry(day).or_insert_with(|| DayRecord {
            node: self.node.0,
            hours: BTreeMap::new(),
        });
        let bucket = record.hours.entry(hour).or_default();
        for (tenant, (series, stored)) in gauges {
            let c = entry(bucket, tenant);
            c.active_series = c.active_series.max(*series);
            c.stored_bytes = c.stored_bytes.max(*stored);
        }
        ledger.dirty.insert(day);
        for (tenant, (series, stored)) in gauges {
            let c = entry(&mut ledger.totals, tenant);
            c.active_series = *series;
            c.stored_bytes = *stored;
        }
    }

    /// Counters since the process started, by tenant (at most [`MAX_TENANTS_PER_HOUR`] and
    /// [`OTHER`]).
    pub fn totals(&self) -> Hour {
        self.ledger
            .lock()
            .expect("usage lock poisoned")
            .totals
            .clone()
    }

    /// Reads back this node's records of the day of `now` and the day before, so a restart
    /// keeps counting into them.
    pub async fn load(&self, store: &dyn ObjectStore, prefix: &Path, now: Nanos) -> Result<()> {
        let (today, _) = day_hour(now);
        let mut failed = None;
        for day in [today - 1, today] {
            if let Err(e) = self.load_day(store, prefix, day).await {
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    async fn load_day(&self, store: &dyn ObjectStore, prefix: &Path, day: i64) -> Result<()> {
        let key = day_prefix(prefix, day).join(format!("node-{}.json", self.node.0));
        let bytes = match store.get(&key).await {
            Ok(r) if r.meta.size > MAX_RECORD_BYTES => {
                return Err(Error::ObjectStore(format!(
                    "{key} is {} bytes, more than a usage record holds ({MAX_RECORD_BYTES})",
                    r.meta.size
                )));
            }
            Ok(r) => r.bytes().await,
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => Err(e),
        }
        .map_err(|e| Error::ObjectStore(format!("reading {key}: {e}")))?;
        let record: DayRecord = serde_json::from_slice(&bytes)
            .map_err(|e| Error::ObjectStore(format!("{key} is not a usage record: {e}")))?;
        let mut ledger = self.ledger.lock().expect("usage lock poisoned");
        let mine = ledger.days.entry(day).or_default();
        for (hour, tenants) in record.hours {
            let bucket = mine.hours.entry(hour).or_default();
            for (tenant, c) in tenants {
                bucket.entry(tenant).or_default().add(&c);
            }
        }
        mine.node = self.node.0;
        Ok(())
    }

    /// Writes the days changed since the last call, and forgets days before yesterday.
    pub async fn persist(&self, store: &dyn ObjectStore, prefix: &Path, now: Nanos) -> Result<()> {
        let _one = self.persisting.lock().await;
        let (today, _) = day_hour(now);
        let pending: Vec<(i64, Vec<u8>)> = {
            let mut ledger = self.ledger.lock().expect("usage lock poisoned");
            let dirty = std::mem::take(&mut ledger.dirty);
            dirty
                .into_iter()
                .filter_map(|day| {
                    let record = ledger.days.get(&day)?;
                    Some((day, serde_json::to_vec(record).expect("usage serialises")))
                })
                .collect()
        };
        for (day, bytes) in pending {
            let key = day_prefix(prefix, day).join(format!("node-{}.json", self.node.0));
            if let Err(e) = store.put(&key, PutPayload::from(bytes)).await {
                self.ledger
                    .lock()
                    .expect("usage lock poisoned")
                    .dirty
                    .insert(day);
                return Err(Error::ObjectStore(format!("writing {key}: {e}")));
            }
        }
        let mut ledger = self.ledger.lock().expect("usage lock poisoned");
        let dirty = ledger.dirty.clone();
        ledger
            .days
            .retain(|day, _| *day >= today - 1 || dirty.contains(day));
        Ok(())
    }
}

/// Every node's usage in `[from, to)`, by tenant (only `tenant` when given), hour by hour.
pub async fn range(
    store: &dyn ObjectStore,
    prefix: &Path,
    from: Nanos,
    to: Nanos,
    tenant: Option<&str>,
) -> Result<BTreeMap<String, Counters>> {
    if to.0 <= from.0 {
        return Err(Error::BadRequest(
            "usage: `to` must be later than `from`".into(),
        ));
    }
    let (first, _) = day_hour(from);
    let (last, _) = day_hour(Nanos(to.0 - 1));
    if last - first >= MAX_RANGE_DAYS {
        return Err(Error::BadRequest(format!(
            "usage: the range spans {} days, the limit is {MAX_RANGE_DAYS}",
            last - first + 1
        )));
    }
    let mut out: BTreeMap<String, Counters> = BTreeMap::new();
    // A day at a time, so memory holds one day's hours, not the range's.
    for day in first..=last {
        // Hour → tenant → usage summed over nodes.
        let mut hours: BTreeMap<u8, Hour> = BTreeMap::new();
        let dir = day_prefix(prefix, day);
        let objects: Vec<_> = store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| Error::ObjectStore(format!("listing {dir}: {e}")))?;
        for meta in objects {
            if meta.size > MAX_RECORD_BYTES {
                return Err(Error::ObjectStore(format!(
                    "{} is {} bytes, more than a usage record holds ({MAX_RECORD_BYTES})",
                    meta.location, meta.size
                )));
            }
            let bytes = store
                .get(&meta.location)
                .await
                .map_err(|e| Error::ObjectStore(format!("reading {}: {e}", meta.location)))?
                .bytes()
                .await
                .map_err(|e| Error::ObjectStore(format!("reading {}: {e}", meta.location)))?;
            let record: DayRecord = serde_json::from_slice(&bytes).map_err(|e| {
                Error::ObjectStore(format!("{} is not a usage record: {e}", meta.location))
            })?;
            for (hour, tenants) in record.hours {
                let start = day * DAY + i64::from(hour) * HOUR;
                if start + HOUR <= from.0 || start >= to.0 {
                    continue;
                }
                let bucket = hours.entry(hour).or_default();
                for (t, c) in tenants {
                    if tenant.is_none_or(|want| want == t) {
                        bucket.entry(t).or_default().add(&c);
                    }
                }
            }
        }
        for tenants in hours.into_values() {
            for (t, c) in tenants {
                out.entry(t).or_default().add_over_time(&c);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn dates_are_civil() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(20_423), "2025-12-01");
        assert_eq!(date(-1), "1969-12-31");
        assert_eq!(date(11_016), "2000-02-29");
    }

    /// Two nodes meter with an injected clock; a range sums counters over hours and nodes and
    /// keeps the largest hour of each gauge.
    #[tokio::test]
    async fn ranges_sum_hours_and_nodes() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let prefix = Path::from("cluster");
        let acme = TenantId::new("acme".to_owned()).expect("id");
        let base = 20_000 * DAY + 22 * HOUR; // 22:00, so the range crosses midnight
        let at = |h: i64| Nanos(base + h * HOUR + 5);
        let one = Usage::new(NodeId(1));
        let two = Usage::new(NodeId(2));
        for h in 0..4 {
            one.record(&acme, at(h), |c| {
                c.ingested_bytes += 100;
                c.ingested_samples += 10;
            });
        }
        two.record(&acme, at(1), |c| {
            c.queries += 1;
            c.scanned_bytes += 7;
        });
        let gauges = |series, stored| BTreeMap::from([(acme.clone(), (series, stored))]);
        one.observe(&gauges(5, 1000), at(1));
        two.observe(&gauges(3, 500), at(1));
        one.observe(&gauges(6, 900), at(2));
        one.persist(store.as_ref(), &prefix, at(4))
            .await
            .expect("persist");
        two.persist(store.as_ref(), &prefix, at(4))
            .await
            .expect("persist");

        let all = range(store.as_ref(), &prefix, at(0), at(4), None)
            .await
            .expect("range");
        let c = all["acme"];
        assert_eq!((c.ingested_bytes, c.ingested_samples), (400, 40));
        assert_eq!((c.queries, c.scanned_bytes), (1, 7));
        // Hour 1: 5 + 3 over the two nodes beats hour 2's 6.
        assert_eq!((c.active_series, c.stored_bytes), (8, 1500));
        // Hours 1 and 2 only (the range starts 5 ns into hour 1's bucket, which counts).
        let part = range(
            store.as_ref(),
            &prefix,
            at(1),
            Nanos(base + 3 * HOUR),
            Some("acme"),
        )
        .await
        .expect("range");
        assert_eq!(part["acme"].ingested_bytes, 200);
        assert!(
            range(store.as_ref(), &prefix, at(0), at(4), Some("other"))
                .await
                .expect("range")
                .is_empty()
        );
        // A restarted node continues from what it wrote.
        let again = Usage::new(NodeId(1));
        again
            .load(store.as_ref(), &prefix, at(3))
            .await
            .expect("load");
        again.record(&acme, at(3), |c| c.ingested_bytes += 1);
        again
            .persist(store.as_ref(), &prefix, at(3))
            .await
            .expect("persist");
        let after = range(store.as_ref(), &prefix, at(0), at(4), None)
            .await
            .expect("range");
        assert_eq!(after["acme"].ingested_bytes, 401);
        assert!(
            range(store.as_ref(), &prefix, at(4), at(0), None)
                .await
                .is_err()
        );
    }
}
