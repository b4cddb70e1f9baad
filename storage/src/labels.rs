//! Label names, values and sets. A series is a label set; `service_name` is always present.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};

/// Label names that link a sample to a trace or profile: kept as columns, they never split series.
pub const LINK_LABELS: [&str; 3] = ["trace_id", "span_id", "profile_id"];
/// The label every series carries.
pub const SERVICE_NAME: &str = "service_name";
/// The value of `service_name` when a client sent none.
pub const UNKNOWN_SERVICE: &str = "unknown_service";
/// The series label that names the profile (`process_cpu`, `memory`); it becomes part of the
/// profile type rather than a label.
pub const METRIC_NAME: &str = "__name__";

/// Limits on labels, with Pyroscope's defaults.
#[derive(Clone, Copy, Debug)]
pub struct LabelLimits {
    pub max_name_len: usize,
    pub max_value_len: usize,
    pub max_labels_per_series: usize,
}

impl Default for LabelLimits {
    fn default() -> Self {
        Self {
            max_name_len: 1024,
            max_value_len: 2048,
            max_labels_per_series: 30,
        }
    }
}

/// True for a label name Firn accepts: `[A-Za-z_][A-Za-z0-9_.]*` (Prometheus names plus dots,
/// which OpenTelemetry attribute names use; selectors quote such names).
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Turns a pprof sample label key into a valid label name by replacing invalid characters with
/// `_` (as Parca does), so a profiler's `http.path` or `goroutine id` is kept, not refused.
pub fn sanitize_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        out.insert(0, '_');
    }
    out
}

/// A sorted set of labels with unique names and non-empty values.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// Validates and sorts client-supplied labels. Empty values mean "absent" (Prometheus).
    pub fn new(
        pairs: impl IntoIterator<Item = (String, String)>,
        limits: &LabelLimits,
    ) -> Result<Self> {
        let mut pairs: Vec<(String, String)> =
            pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        for (name, value) in &pairs {
            validate_pair(name, value, limits)?;
        }
        pairs.sort();
        if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::InvalidLabel {
                reason: format!("label name {:?} appears more than once", w[0].0),
            });
        }
        let labels = Labels(pairs);
        labels.check_count(limits)?;
        Ok(labels)
    }

    /// Labels already validated and sorted (read back from a log record): only their order
    /// and uniqueness are checked.
    pub(crate) fn from_sorted(pairs: Vec<(String, String)>) -> std::result::Result<Self, String> {
        if pairs.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("labels are not sorted by unique name".into());
        }
        Ok(Labels(pairs))
    }

    pub fn check_count(&self, limits: &LabelLimits) -> Result<()> {
        if self.0.len() > limits.max_labels_per_series {
            return Err(Error::LabelLimit {
                reason: format!(
                    "series has {} labels, the limit is {} label names per series \
                     (max_label_names_per_series)",
                    self.0.len(),
                    limits.max_labels_per_series
                ),
            });
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// Sets a label, replacing any value it had.
    pub fn insert(&mut self, name: String, value: String) {
        match self.0.binary_search_by(|(n, _)| n.cmp(&name)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self
            .0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()?;
        Some(self.0.remove(i).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A 64-bit fingerprint of the set: the series id.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(self.iter())
    }
}

/// The series id of a label set given as (name, value) pairs sorted by name, non-empty values
/// only: what [`Labels::fingerprint`] gives for the same set. Blocks do not store it; a reader
/// recomputes it from the label columns ([`crate::schema::series_ids`]).
pub fn fingerprint<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut hasher = Xxh3::new();
    for (name, value) in pairs {
        hasher.update(name.as_bytes());
        hasher.update(&[0xff]);
        hasher.update(value.as_bytes());
        hasher.update(&[0xfe]);
    }
    hasher.digest()
}

/// Checks one label against the name rules and length limits.
pub fn validate_pair(name: &str, value: &str, limits: &LabelLimits) -> Result<()> {
    if !is_valid_name(name) {
        return Err(Error::InvalidLabel {
            reason: format!(
                "label name {name:?} is not a valid label name: use letters, digits, '_' and '.', \
                 starting with a letter or '_'"
            ),
        });
    }
    if name.len() > limits.max_name_len {
        return Err(Error::LabelLimit {
            reason: format!(
                "label name {:?}... is {} bytes long, the limit is {} bytes (max_label_name_length)",
                truncate(name),
                name.len(),
                limits.max_name_len
            ),
        });
    }
    if value.len() > limits.max_value_len {
        return Err(Error::LabelLimit {
            reason: format!(
                "value of label {name:?} is {} bytes long, the limit is {} bytes \
                 (max_label_value_length)",
                value.len(),
                limits.max_value_len
            ),
        });
    }
    Ok(())
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn labels_are_sorted_validated_and_fingerprinted() {
        let limits = LabelLimits::default();
        let a = Labels::new(
            pairs(&[("pod", "p1"), ("service_name", "api"), ("empty", "")]),
            &limits,
        )
        .expect("valid");
        let b =
            Labels::new(pairs(&[("service_name", "api"), ("pod", "p1")]), &limits).expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.get("pod"), Some("p1"));
        assert_eq!(a.get("empty"), None);
        let c =
            Labels::new(pairs(&[("service_name", "api"), ("pod", "p2")]), &limits).expect("valid");
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn bad_labels_name_the_problem() {
        let limits = LabelLimits {
            max_name_len: 8,
            max_value_len: 4,
            max_labels_per_series: 2,
        };
        let err = Labels::new(pairs(&[("x y", "1")]), &limits).expect_err("space");
        assert!(
            err.to_string()
                .contains("label name \"x y\" is not a valid label name"),
            "{err}"
        );
        let err = Labels::new(pairs(&[("a", "12345")]), &limits).expect_err("long value");
        assert!(err.to_string().contains("the limit is 4 bytes"), "{err}");
        let err = Labels::new(pairs(&[("a", "1"), ("a", "2")]), &limits).expect_err("dup");
        assert!(err.to_string().contains("more than once"), "{err}");
        let err =
            Labels::new(pairs(&[("a", "1"), ("b", "2"), ("c", "3")]), &limits).expect_err("count");
        assert!(
            err.to_string().contains("the limit is 2 label names"),
            "{err}"
        );
        assert!(Labels::new(pairs(&[("1a", "1")]), &limits).is_err());
    }

    #[test]
    fn sanitize_makes_valid_names() {
        for raw in ["goroutine id", "http/path", "9lives", "", "ok_name", "a.b"] {
            assert!(is_valid_name(&sanitize_name(raw)), "{raw}");
        }
        assert_eq!(sanitize_name("ok_name"), "ok_name");
    }
}
