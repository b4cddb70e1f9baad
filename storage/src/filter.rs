//! A conjunction of simple predicates that the buffer and block metadata can evaluate per
//! profile row or per block, so scans skip what cannot match. It only ever prunes: the query
//! engine still applies its full filter to what a scan returns.

use std::collections::BTreeSet;
use std::ops::Range;

use regex::Regex;

use crate::ids::Nanos;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    NotEq,
    Re,
    NotRe,
}

/// A Prometheus label matcher. An absent label matches as the empty string, as in Prometheus.
#[derive(Clone, Debug)]
pub struct LabelMatcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// Anchored regex for `=~` and `!~`.
    regex: Option<Regex>,
}

impl LabelMatcher {
    /// Builds a matcher; regexes are anchored (`^(?:...)$`) as Prometheus does.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, regex::Error> {
        let value = value.into();
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                regex::RegexBuilder::new(&format!("^(?s:{value})$"))
                    .size_limit(1 << 20)
                    .build()?,
            ),
            _ => None,
        };
        Ok(Self {
            name: name.into(),
            op,
            value,
            regex,
        })
    }

    pub fn matches(&self, value: Option<&str>) -> bool {
        let v = value.unwrap_or("");
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::NotEq => v != self.value,
            MatchOp::Re => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRe => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// Could any row whose label takes one of `values` (or is absent, when `may_be_absent`) match?
    pub fn may_match(&self, values: &BTreeSet<String>, may_be_absent: bool) -> bool {
        (may_be_absent && self.matches(None)) || values.iter().any(|v| self.matches(Some(v)))
    }
}

/// What a scan may skip. Empty fields do not restrict.
#[derive(Clone, Debug)]
pub struct ScanFilter {
    /// Half-open `[start, end)` in nanoseconds.
    pub time: Range<Nanos>,
    /// Profile type IDs to keep; `None` keeps all.
    pub profile_types: Option<BTreeSet<String>>,
    pub delta: Option<bool>,
    pub labels: Vec<LabelMatcher>,
}

impl Default for ScanFilter {
    fn default() -> Self {
        Self {
            time: Nanos::MIN..Nanos::MAX,
            profile_types: None,
            delta: None,
            labels: Vec::new(),
        }
    }
}

impl ScanFilter {
    pub fn overlaps_time(&self, min: Nanos, max: Nanos) -> bool {
        min < self.time.end && max >= self.time.start
    }

    pub fn keeps_profile_type(&self, id: &str) -> bool {
        self.profile_types
            .as_ref()
            .is_none_or(|set| set.contains(id))
    }
}
