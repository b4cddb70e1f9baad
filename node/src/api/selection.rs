//! What a query selects, checked once for both query APIs (the Pyroscope querier and Firn's
//! own `/api/v1/`): time ranges, and selectors split into what the profile type decides and
//! what label columns decide. Pyroscope's private labels (`__name__`, `__profile_type__`,
//! `__type__`, `__unit__`, `__period_type__`, `__period_unit__`) are not columns in Firn: the
//! profile type implies them, so matchers on them select profile types, and label names,
//! values and series report them as Pyroscope does.
//!
//! The metadata queries (label names, label values, series label sets) live here too, so both
//! APIs answer them the same way.

use std::collections::BTreeSet;

use firn_query::{
    Aggregation, Coordinator, LinkSelector, MergedProfile, ProfileQuery, Selector, SeriesOptions,
};
use firn_storage::filter::LabelMatcher;
use firn_storage::symbols::SymbolTable;
use firn_storage::{Nanos, ProfileType, TenantId};

use crate::api::error::error_chain;
use crate::error::{Error, Result};
use crate::time::{now, parse_time};

/// The part of a profile type a private label takes.
type TypePart = fn(&ProfileType) -> String;

/// Label names a profile type implies, with the part of the type each one takes.
pub const TYPE_LABELS: [(&str, TypePart); 6] = [
    ("__name__", |t| t.name.clone()),
    ("__period_type__", |t| t.period_type.clone()),
    ("__period_unit__", |t| t.period_unit.clone()),
    ("__profile_type__", |t| t.id()),
    ("__type__", |t| t.sample_type.clone()),
    ("__unit__", |t| t.sample_unit.clone()),
];

/// Selectors one request may carry (each costs at least one scan).
pub const MAX_SELECTORS: usize = 32;
/// The last millisecond whose nanoseconds fit an `i64` (in the year 2262).
pub const MAX_MILLIS: i64 = i64::MAX / 1_000_000 - 1;
/// What "recent" means when a metadata request names no time range.
const RECENT: Nanos = Nanos(3_600_000_000_000);

fn type_label(name: &str) -> Option<TypePart> {
    TYPE_LABELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, part)| *part)
}

/// A half-open time range `[start, end)` in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub start: Nanos,
    pub end: Nanos,
}

impl TimeRange {
    /// Pyroscope's inclusive `[start, end]` in milliseconds. `prefix` names the message the
    /// fields are in (`left.`), for errors.
    pub fn from_millis(start: i64, end: i64, prefix: &str) -> Result<Self> {
        for (field, ms) in [("start", start), ("end", end)] {
            if !(0..=MAX_MILLIS).contains(&ms) {
                return Err(Error::BadRequest(format!(
                    "{prefix}{field} is {ms} ms; it must be a Unix time in milliseconds between 0 and {MAX_MILLIS}"
                )));
            }
        }
        if start > end {
            return Err(Error::BadRequest(format!(
                "{prefix}start ({start} ms) is after {prefix}end ({end} ms)"
            )));
        }
        Ok(Self {
            start: Nanos::from_millis(start),
            end: Nanos::from_millis(end + 1),
        })
    }

    /// As [`TimeRange::from_millis`], for metadata requests where zero means "recent": both
    /// zero is the last hour, an `end` of zero is now.
    pub fn from_millis_or_recent(start: i64, end: i64, prefix: &str) -> Result<Self> {
        let current = now();
        if start == 0 && end == 0 {
            return Ok(Self {
                start: current.saturating_sub(RECENT),
                end: Nanos(current.0.saturating_add(1)),
            });
        }
        let end = if end == 0 { current.as_millis() } else { end };
        Self::from_millis(start, end, prefix)
    }

    /// Firn's API: `from` and `until` as [`parse_time`] reads them (unit guessed from digits,
    /// RFC 3339, `now-1h`), `until` inclusive. Defaults: the last hour. `names` are the
    /// parameters' names, for errors.
    pub fn from_params(
        from: Option<&str>,
        until: Option<&str>,
        names: (&str, &str),
    ) -> Result<Self> {
        let current = now();
        let parse = |text: Option<&str>, default: Nanos, name: &str| match text {
            Some(t) => {
                parse_time(t, current).map_err(|e| Error::BadRequest(format!("{name}: {e}")))
            }
            None => Ok(default),
        };
        let start = parse(from, current.saturating_sub(RECENT), names.0)?;
        let until = parse(until, current, names.1)?;
        if start > until {
            return Err(Error::BadRequest(format!(
                "{} ({} ns) is after {} ({} ns)",
                names.0, start.0, names.1, until.0
            )));
        }
        Ok(Self {
            start,
            end: Nanos(until.0.saturating_add(1)),
        })
    }

    pub fn len(&self) -> Nanos {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Ids a link selector may hold per kind.
pub const MAX_LINK_IDS: usize = 1000;

/// Checks the ids of a trace-to-profile selection: trace ids 32 hex digits, span ids 16 (as
/// OpenTelemetry writes them), profile ids 1 to 64 printable characters; `fields` name the
/// request's fields, for errors.
pub fn link_selector(
    [
        (trace_field, trace_ids),
        (span_field, span_ids),
        (profile_field, profile_ids),
    ]: [(&str, &[String]); 3],
) -> Result<LinkSelector> {
    let hex = |field: &str, ids: &[String], len: usize| -> Result<Vec<String>> {
        check_count(field, ids)?;
        ids.iter()
            .map(|id| {
                if id.len() == len && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(id.to_ascii_lowercase())
                } else {
                    Err(Error::BadRequest(format!(
                        "{field}: {id:?} is not {len} hex digits"
                    )))
                }
            })
            .collect()
    };
    check_count(profile_field, profile_ids)?;
    if let Some(bad) = profile_ids.iter().find(|id| {
        id.is_empty() || id.len() > 64 || !id.bytes().all(|b| (0x21..=0x7e).contains(&b))
    }) {
        return Err(Error::BadRequest(format!(
            "{profile_field}: {bad:?} is not 1 to 64 printable characters"
        )));
    }
    Ok(LinkSelector {
        trace_ids: hex(trace_field, trace_ids, 32)?,
        span_ids: hex(span_field, span_ids, 16)?,
        profile_ids: profile_ids.to_vec(),
    })
}

fn check_count(field: &str, ids: &[String]) -> Result<()> {
    if ids.len() > MAX_LINK_IDS {
        return Err(Error::BadRequest(format!(
            "{field} has {} ids, the limit is {MAX_LINK_IDS}",
            ids.len()
        )));
    }
    Ok(())
}

/// A parsed selector, split into what the profile type decides and what label columns decide.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    profile_type: Option<ProfileType>,
    delta: Option<bool>,
    /// Matchers on the labels a profile type implies.
    type_matchers: Vec<LabelMatcher>,
    /// Matchers on label columns.
    matchers: Vec<LabelMatcher>,
    /// Samples by trace, span or profile id.
    links: LinkSelector,
}

impl Selection {
    /// Parses a selector (`type{k="v"}`, `{k=~"re"}`; empty selects everything). `field`
    /// names the parameter, for errors.
    pub fn parse(text: &str, field: &str) -> Result<Self> {
        let text = text.trim();
        let selector = if text.is_empty() {
            Selector::default()
        } else {
            Selector::parse(text)
                .map_err(|e| Error::BadRequest(format!("{field}: {}", error_chain(&e))))?
        };
        let (type_matchers, matchers) = selector
            .matchers
            .into_iter()
            .partition(|m| type_label(&m.name).is_some());
        Ok(Self {
            profile_type: selector.profile_type,
            delta: selector.delta,
            type_matchers,
            matchers,
            links: LinkSelector::default(),
        })
    }

    /// Parses every selector of a request (none selects everything).
    pub fn parse_all(texts: &[String], field: &str) -> Result<Vec<Self>> {
        if texts.len() > MAX_SELECTORS {
            return Err(Error::BadRequest(format!(
                "{field} has {} selectors, the limit is {MAX_SELECTORS}",
                texts.len()
            )));
        }
        if texts.is_empty() {
            return Ok(vec![Self::default()]);
        }
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| Self::parse(t, &format!("{field}[{i}]")))
            .collect()
    }

    /// Pyroscope's pair of fields: a profile type ID and a label selector (`{...}`).
    pub fn with_type(profile_type_id: &str, label_selector: &str, prefix: &str) -> Result<Self> {
        if profile_type_id.is_empty() {
            return Err(Error::BadRequest(format!(
                "{prefix}profile_typeID is required (name:sample_type:sample_unit:period_type:period_unit)"
            )));
        }
        let profile_type = ProfileType::parse(profile_type_id)
            .map_err(|e| Error::BadRequest(format!("{prefix}profile_typeID: {e}")))?;
        let mut selection = Self::parse(label_selector, &format!("{prefix}label_selector"))?;
        match &selection.profile_type {
            Some(named) if *named != profile_type => {
                return Err(Error::BadRequest(format!(
                    "{prefix}label_selector names profile type {named}, {prefix}profile_typeID {profile_type}"
                )));
            }
            _ => selection.profile_type = Some(profile_type),
        }
        Ok(selection)
    }

    /// A Parca query: a selector that names its profile type, five parts for profiles
    /// without a duration, six (`...:delta`) for delta profiles, as Parca reads them.
    pub fn parca(text: &str, field: &str) -> Result<(Self, ProfileType)> {
        let selection = Self::parca_match(text, field)?;
        match selection.profile_type.clone() {
            Some(t) => Ok((selection, t)),
            None => Err(Error::BadRequest(format!(
                "{field} {text:?} names no profile type; write name:sample_type:sample_unit:period_type:period_unit[:delta]{{...}}"
            ))),
        }
    }

    /// A Parca matcher: as [`Selection::parca`], its profile type optional.
    pub fn parca_match(text: &str, field: &str) -> Result<Self> {
        let mut selection = Self::parse(text, field)?;
        if selection.profile_type.is_some() {
            selection.delta = Some(selection.delta.unwrap_or(false));
        }
        Ok(selection)
    }

    /// This selection, of the profile type (and delta kind) `typed` names only; an error
    /// naming `field` if the selection names another.
    pub fn with_type_of(mut self, typed: &Selection, field: &str) -> Result<Self> {
        if let (Some(mine), Some(theirs)) = (&self.profile_type, &typed.profile_type)
            && (mine != theirs || self.delta != typed.delta)
        {
            return Err(Error::BadRequest(format!(
                "{field} is {theirs}, but a selector names {mine}"
            )));
        }
        self.profile_type = self.profile_type.or_else(|| typed.profile_type.clone());
        self.delta = self.delta.or(typed.delta);
        Ok(self)
    }

    /// `Some(true)` for delta profiles only, `Some(false)` for the others, `None` for both.
    pub fn delta(&self) -> Option<bool> {
        self.delta
    }

    pub fn profile_type(&self) -> Option<&ProfileType> {
        self.profile_type.as_ref()
    }

    /// Whether rows of `profile_type` may be selected.
    pub fn admits(&self, profile_type: &ProfileType) -> bool {
        self.profile_type.as_ref().is_none_or(|t| t == profile_type)
            && self.type_matchers.iter().all(|m| {
                let part = type_label(&m.name).map(|part| part(profile_type));
                m.matches(part.as_deref())
            })
    }

    /// The query for rows of `profile_type` (or of any type), or `None` if this selection
    /// admits none of them.
    pub fn query(
        &self,
        profile_type: Option<&ProfileType>,
        range: TimeRange,
    ) -> Option<ProfileQuery> {
        let profile_type = profile_type.or(self.profile_type.as_ref());
        if let Some(t) = profile_type
            && !self.admits(t)
        {
            return None;
        }
        Some(ProfileQuery {
            selector: Selector {
                profile_type: profile_type.cloned(),
                delta: self.delta,
                matchers: self.matchers.clone(),
            },
            start: range.start,
            end: range.end,
            stack_filter: None,
            links: self.links.clone(),
        })
    }

    /// This selection, of the samples these link ids pick only.
    pub fn with_links(mut self, links: LinkSelector) -> Self {
        self.links = links;
        self
    }

    /// The profile types in `range` this selection admits (by type; labels not checked).
    async fn types_in(
        &self,
        engine: &Coordinator,
        tenant: &TenantId,
        range: TimeRange,
    ) -> Result<Vec<ProfileType>> {
        let mut types = engine.profile_types(tenant, range.start, range.end).await?;
        types.retain(|t| self.admits(t));
        Ok(types)
    }

    /// Queries that together cover this selection: one per admitted profile type when the
    /// selection constrains types through private labels, else a single one.
    async fn queries(
        &self,
        engine: &Coordinator,
        tenant: &TenantId,
        range: TimeRange,
    ) -> Result<Vec<ProfileQuery>> {
        if self.type_matchers.is_empty() {
            return Ok(self.query(None, range).into_iter().collect());
        }
        let types = self.types_in(engine, tenant, range).await?;
        Ok(types
            .iter()
            .filter_map(|t| self.query(Some(t), range))
            .collect())
    }
}

/// The selection in `range` merged into one profile (empty if it admits no rows).
pub async fn merge(
    engine: &Coordinator,
    tenant: &TenantId,
    selection: &Selection,
    range: TimeRange,
) -> Result<MergedProfile> {
    match selection.query(None, range) {
        Some(query) => Ok(engine.merge(tenant, &query).await?),
        None => Ok(MergedProfile {
            profile_type: selection.profile_type().cloned(),
            period: 0,
            duration_nanos: range.len().0,
            time_nanos: range.start.0,
            symbols: SymbolTable::new(),
            stacks: Vec::new(),
        }),
    }
}

/// Label names on rows any of `selections` selects in `range`, the private labels of their
/// profile types included, sorted.
pub async fn label_names(
    engine: &Coordinator,
    tenant: &TenantId,
    selections: &[Selection],
    range: TimeRange,
) -> Result<Vec<String>> {
    let mut names = BTreeSet::new();
    for selection in selections {
        for query in selection.queries(engine, tenant, range).await? {
            let found = engine.label_names(tenant, &query).await?;
            if !found.is_empty() {
                names.extend(TYPE_LABELS.iter().map(|(n, _)| (*n).to_owned()));
            }
            names.extend(found);
        }
    }
    Ok(names.into_iter().collect())
}

/// Values of label `name` on rows any of `selections` selects in `range`, sorted: the
/// `page` of them.
pub async fn label_values(
    engine: &Coordinator,
    tenant: &TenantId,
    selections: &[Selection],
    name: &str,
    range: TimeRange,
    page: &firn_query::ValuePage,
) -> Result<Vec<String>> {
    let mut values = BTreeSet::new();
    for selection in selections {
        if let Some(part) = type_label(name) {
            // Values of a private label come from the profile types that have selected rows.
            for t in selection.types_in(engine, tenant, range).await? {
                let Some(query) = selection.query(Some(&t), range) else {
                    continue;
                };
                if selection.matchers.is_empty()
                    || !engine.label_names(tenant, &query).await?.is_empty()
                {
                    values.insert(part(&t));
                }
            }
            continue;
        }
        for query in selection.queries(engine, tenant, range).await? {
            values.extend(engine.label_values(tenant, &query, name, page).await?);
        }
    }
    Ok(page.cut(values))
}

/// The distinct label sets (series) any of `selections` selects in `range`, limited to
/// `names` when it is not empty, each sorted by name, the whole sorted.
pub async fn series_labels(
    engine: &Coordinator,
    tenant: &TenantId,
    selections: &[Selection],
    names: &[String],
    range: TimeRange,
) -> Result<Vec<Vec<(String, String)>>> {
    let wanted = |name: &str| names.is_empty() || names.iter().any(|n| n == name);
    let mut sets = BTreeSet::new();
    for selection in selections {
        for t in selection.types_in(engine, tenant, range).await? {
            let Some(query) = selection.query(Some(&t), range) else {
                continue;
            };
            let group_by: Vec<String> = if names.is_empty() {
                engine.label_names(tenant, &query).await?
            } else {
                names
                    .iter()
                    .filter(|n| type_label(n).is_none())
                    .cloned()
                    .collect()
            };
            let options = SeriesOptions {
                step: range.len(),
                group_by,
                aggregation: Aggregation::Sum,
                limit: None,
            };
            for series in engine.series(tenant, &query, &options).await? {
                let mut labels = series.labels;
                labels.extend(
                    TYPE_LABELS
                        .iter()
                        .filter(|(n, _)| wanted(n))
                        .map(|(n, part)| ((*n).to_owned(), part(&t))),
                );
                labels.sort();
                sets.insert(labels);
            }
        }
    }
    Ok(sets.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu() -> ProfileType {
        ProfileType::parse("process_cpu:cpu:nanoseconds:cpu:nanoseconds").expect("type")
    }

    #[test]
    fn millisecond_ranges_are_checked_and_named() {
        let r = TimeRange::from_millis(1_000, 2_000, "").expect("valid");
        assert_eq!(
            (r.start, r.end),
            (Nanos(1_000_000_000), Nanos(2_001_000_000))
        );
        assert!(TimeRange::from_millis(5, 5, "").is_ok(), "one millisecond");
        for (start, end, needle) in [
            (2_000, 1_000, "start (2000 ms) is after end (1000 ms)"),
            (-1, 1_000, "start is -1 ms"),
            (0, i64::MAX, "end is 9223372036854775807 ms"),
        ] {
            let e = TimeRange::from_millis(start, end, "").expect_err("invalid");
            assert!(e.to_string().contains(needle), "{e}");
        }
        let e = TimeRange::from_millis(2, 1, "left.").expect_err("invalid");
        assert!(e.to_string().starts_with("left.start"), "{e}");
        let recent = TimeRange::from_millis_or_recent(0, 0, "").expect("recent");
        assert_eq!(recent.len(), Nanos(RECENT.0 + 1));
    }

    #[test]
    fn private_labels_select_profile_types() {
        let s = Selection::parse(
            r#"{__name__="process_cpu", __unit__=~"nano.*", service_name="api"}"#,
            "query",
        )
        .expect("valid");
        assert!(s.admits(&cpu()));
        let memory = ProfileType::parse("memory:alloc_space:bytes:space:bytes").expect("type");
        assert!(!s.admits(&memory));
        let q = s.query(
            Some(&cpu()),
            TimeRange::from_millis(0, 1, "").expect("range"),
        );
        let q = q.expect("admitted");
        assert_eq!(
            q.selector.matchers.len(),
            1,
            "only service_name reaches the engine"
        );
        assert!(
            s.query(Some(&memory), TimeRange::from_millis(0, 1, "").expect("r"))
                .is_none()
        );

        let typed = Selection::with_type(&cpu().id(), "", "").expect("typed");
        assert_eq!(typed.profile_type(), Some(&cpu()));
        for (id, selector, needle) in [
            ("", "{}", "profile_typeID is required"),
            ("a:b", "{}", "profile_typeID: "),
            (&cpu().id() as &str, "{x=}", "label_selector: selector"),
            (
                &cpu().id() as &str,
                "memory:a:b:c:d{}",
                "names profile type memory:a:b:c:d",
            ),
        ] {
            let e = Selection::with_type(id, selector, "").expect_err("invalid");
            assert!(e.to_string().contains(needle), "{e}");
        }
        let too_many = vec!["{}".to_owned(); MAX_SELECTORS + 1];
        let e = Selection::parse_all(&too_many, "matchers").expect_err("too many");
        assert!(e.to_string().contains("the limit is 32"), "{e}");
    }
}
