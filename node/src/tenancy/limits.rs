//! Per-tenant limits: built-in defaults, the cluster's default overrides and each tenant's own
//! overrides, all held by the meta group and changed at runtime. [`Limits::resolve`] layers
//! them: a field a layer leaves out comes from the layer below.
//!
//! ```text
//!  built-in defaults ◄─ cluster defaults (PUT /api/v1/admin/limits)
//!                    ◄─ tenant overrides (PUT /api/v1/admin/tenants/{id}/limits)
//! ```
//!
//! Zero means "no limit" for the rate, active series, query range and retention; sizes and
//! counts must be positive.

use serde::{Deserialize, Serialize};

/// One layer of limits: the fields it sets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingestion_rate_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingestion_burst_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_profile_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_profile_decompressed_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_label_names_per_series: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_label_name_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_label_value_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_series: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_query_range_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_query_memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_secs: Option<u64>,
}

/// The limits in force for one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes per second of profiles as received (a pprof as sent, after the request's own
    /// gzip or multipart framing; folded text after scaling), cluster-wide; each node takes an
    /// equal share. 0 = no limit.
    pub ingestion_rate_bytes: u64,
    /// Bytes a node admits at once above the rate.
    pub ingestion_burst_bytes: u64,
    /// Largest profile as received (a pprof is usually gzipped), before decompression.
    pub max_profile_bytes: u64,
    /// Largest profile after decompression.
    pub max_profile_decompressed_bytes: u64,
    pub max_label_names_per_series: u64,
    pub max_label_name_length: u64,
    pub max_label_value_length: u64,
    /// Series written to in the last [`crate::tenancy::series::ACTIVE_WINDOW`]; 0 = no limit.
    pub max_active_series: u64,
    /// Longest time range of a profile query; 0 = no limit.
    pub max_query_range_secs: u64,
    /// Memory one query may hold at its coordinator; the coordinator's own pool (1 GiB by
    /// default) bounds all queries together, so only a value below it caps each query.
    pub max_query_memory_bytes: u64,
    /// Rows older than this are not returned and their blocks are deleted; 0 = forever.
    pub retention_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ingestion_rate_bytes: 64 << 20,
            ingestion_burst_bytes: 128 << 20,
            max_profile_bytes: 64 << 20,
            max_profile_decompressed_bytes: 64 << 20,
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_active_series: 1_000_000,
            max_query_range_secs: 0,
            max_query_memory_bytes: 1 << 30,
            retention_secs: 0,
        }
    }
}

macro_rules! each_limit {
    ($m:ident) => {
        $m!(
            ingestion_rate_bytes,
            ingestion_burst_bytes,
            max_profile_bytes,
            max_profile_decompressed_bytes,
            max_label_names_per_series,
            max_label_name_length,
            max_label_value_length,
            max_active_series,
            max_query_range_secs,
            max_query_memory_bytes,
            retention_secs
        )
    };
}

impl Limits {
    /// The built-in defaults under `defaults`, under `tenant`.
    pub fn resolve(defaults: &LimitOverrides, tenant: Option<&LimitOverrides>) -> Self {
        let mut limits = Limits::default();
        limits.apply(defaults);
        if let Some(t) = tenant {
            limits.apply(t);
        }
        limits
    }

    fn apply(&mut self, layer: &LimitOverrides) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = layer.$f { self.$f = v; } )* };
        }
        each_limit!(set);
    }

    /// The retention in nanoseconds, `None` for forever.
    pub fn retention_nanos(&self) -> Option<i64> {
        (self.retention_secs > 0)
            .then(|| i64::try_from(self.retention_secs.saturating_mul(1_000_000_000)))
            .and_then(Result::ok)
    }
}

impl LimitOverrides {
    /// Checks every value set: sizes and counts positive, nothing absurd.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("ingestion_burst_bytes", self.ingestion_burst_bytes),
            ("max_profile_bytes", self.max_profile_bytes),
            (
                "max_profile_decompressed_bytes",
                self.max_profile_decompressed_bytes,
            ),
            (
                "max_label_names_per_series",
                self.max_label_names_per_series,
            ),
            ("max_label_name_length", self.max_label_name_length),
            ("max_label_value_length", self.max_label_value_length),
            ("max_query_memory_bytes", self.max_query_memory_bytes),
        ];
        for (name, value) in positive {
            if value == Some(0) {
                return Err(format!("{name} must be greater than zero"));
            }
        }
        // Far past any real use; keeps arithmetic on them from overflowing.
        const MAX: u64 = 1 << 50;
        macro_rules! bounded {
            ($($f:ident),*) => {
                $( if self.$f.is_some_and(|v| v > MAX) {
                    return Err(format!("{} must be at most {MAX}", stringify!($f)));
                } )*
            };
        }
        each_limit!(bounded);
        Ok(())
    }

    /// This layer with `patch` laid over it; a `null` in the patch removes an override.
    pub fn patched(&self, patch: &serde_json::Value) -> Result<Self, String> {
        let mut current = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let (Some(fields), Some(changes)) = (current.as_object_mut(), patch.as_object()) else {
            return Err("limits must be a JSON object of limit names and numbers".into());
        };
        for (name, value) in changes {
            if value.is_null() {
                fields.remove(name);
            } else {
                fields.insert(name.clone(), value.clone());
            }
        }
        let patched: LimitOverrides = serde_json::from_value(current).map_err(|e| {
            format!(
                "{e}; limits are non-negative integers: {}",
                names().join(", ")
            )
        })?;
        patched.validate()?;
        Ok(patched)
    }
}

/// Every limit's name.
pub fn names() -> Vec<&'static str> {
    macro_rules! list {
        ($($f:ident),*) => { vec![$(stringify!($f)),*] };
    }
    each_limit!(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_field_by_field() {
        let defaults = LimitOverrides {
            max_active_series: Some(10),
            retention_secs: Some(3600),
            ..Default::default()
        };
        let tenant = LimitOverrides {
            retention_secs: Some(60),
            ..Default::default()
        };
        let limits = Limits::resolve(&defaults, Some(&tenant));
        assert_eq!(limits.max_active_series, 10);
        assert_eq!(limits.retention_secs, 60);
        assert_eq!(
            limits.max_label_names_per_series,
            Limits::default().max_label_names_per_series
        );
        assert_eq!(limits.retention_nanos(), Some(60_000_000_000));
        assert_eq!(Limits::default().retention_nanos(), None);
    }

    #[test]
    fn patches_set_remove_and_refuse() {
        let base = LimitOverrides {
            max_active_series: Some(10),
            ..Default::default()
        };
        let patched = base
            .patched(&serde_json::json!({"max_active_series": null, "retention_secs": 5}))
            .expect("valid");
        assert_eq!(patched.max_active_series, None);
        assert_eq!(patched.retention_secs, Some(5));
        let err = base
            .patched(&serde_json::json!({"max_lables": 1}))
            .expect_err("unknown");
        assert!(err.contains("max_lables"), "{err}");
        let err = base
            .patched(&serde_json::json!({"max_profile_bytes": 0}))
            .expect_err("zero");
        assert!(err.contains("max_profile_bytes"), "{err}");
        assert!(
            base.patched(&serde_json::json!({"retention_secs": -1}))
                .is_err()
        );
        assert!(base.patched(&serde_json::json!([1])).is_err());
    }
}
