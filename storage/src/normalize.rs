//! Normalisation: a decoded profile becomes profile rows (one per sample type and label set)
//! plus the write's local symbols. Pure functions over data, no shared state, so a server runs
//! them off the write lock and in parallel.
//!
//! Rules: one pprof with N sample types yields N profile types; pprof string labels join the
//! series labels (and so split series), except `trace_id`, `span_id` and `profile_id`, which
//! become per-sample columns; numeric labels are dropped; zero values are dropped; `duration > 0`
//! marks a delta profile; timestamps are nanoseconds (the profile's own, else the receive time).

mod codec;
mod folded;

use crate::symbols::HashMap;

use crate::error::{Error, Result};
use crate::ids::{Nanos, StackId, TenantId};
use crate::labels::{self, LabelLimits, Labels};
use crate::pprof::{self, DecodeLimits, ValidProfile};
use crate::profile_type::{ProfileType, clean_part};
use crate::symbols::{self, FunctionView, LocalSymbols, MappingView, Stack, SymbolRef};

pub use codec::{decode_normalized, encode_normalized};
pub use folded::parse_folded;

/// What a client sent.
#[derive(Clone, Debug)]
pub enum Payload {
    /// A raw or gzipped pprof protobuf.
    Pprof(bytes::Bytes),
    /// Folded stacks (`a;b;c 12`, root first) with the profile type they measure.
    Folded {
        text: bytes::Bytes,
        profile_type: ProfileType,
        delta: bool,
        duration: Nanos,
    },
}

/// One write: a payload with its series labels, tenant and receive time.
#[derive(Clone, Debug)]
pub struct WriteRequest {
    pub tenant: TenantId,
    /// Series labels. `__name__` names the profile type; `service_name` defaults to
    /// `unknown_service`.
    pub labels: Vec<(String, String)>,
    pub payload: Payload,
    /// Used when the profile carries no timestamp of its own.
    pub received_at: Nanos,
}

/// Limits applied while normalising untrusted input.
#[derive(Clone, Copy, Debug)]
pub struct NormalizeLimits {
    pub decode: DecodeLimits,
    pub labels: LabelLimits,
    /// Most locations in one stack (Go's runtime records at most 64; eBPF agents 127-512).
    pub max_stack_depth: usize,
}

impl Default for NormalizeLimits {
    fn default() -> Self {
        Self {
            decode: DecodeLimits::default(),
            labels: LabelLimits::default(),
            max_stack_depth: 4096,
        }
    }
}

/// Per-sample link columns: present only when some sample in the row carries the label.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Links {
    pub trace_id: Option<Vec<Option<String>>>,
    pub span_id: Option<Vec<Option<String>>>,
    pub profile_id: Option<Vec<Option<String>>>,
}

/// The samples of one series for one profile type at one time.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileRows {
    pub profile_type: ProfileType,
    pub delta: bool,
    pub labels: Labels,
    pub time: Nanos,
    pub duration: Nanos,
    pub period: i64,
    /// Index into the write's local stacks, one per sample.
    pub stacks: Vec<SymbolRef>,
    pub values: Vec<i64>,
    pub links: Links,
}

/// A normalised write, ready to be applied to a buffer: its symbols as normalisation built
/// them ([`LocalSymbols`]) or as a replica decoded them from the log
/// ([`crate::symbols::PackedSymbols`]); both apply alike.
#[derive(Clone, Debug)]
pub struct Normalized<S = LocalSymbols> {
    pub tenant: TenantId,
    pub symbols: S,
    pub profiles: Vec<ProfileRows>,
    /// Bytes of input, for accounting.
    pub input_bytes: usize,
}

impl<S> Normalized<S> {
    pub fn sample_count(&self) -> usize {
        self.profiles.iter().map(|p| p.values.len()).sum()
    }
}

/// Decodes, validates and normalises one write.
pub fn normalize(request: WriteRequest, limits: &NormalizeLimits) -> Result<Normalized> {
    let mut series = Labels::new(request.labels, &limits.labels)?;
    let name = series.remove(labels::METRIC_NAME);
    if series.get(labels::SERVICE_NAME).is_none() {
        series.insert(
            labels::SERVICE_NAME.to_owned(),
            labels::UNKNOWN_SERVICE.to_owned(),
        );
    }
    let (input_bytes, mut normalized) = match request.payload {
        Payload::Pprof(bytes) => {
            let profile = pprof::decode(&bytes, limits.decode)?;
            (
                bytes.len(),
                from_pprof(
                    profile,
                    name.as_deref(),
                    &series,
                    request.received_at,
                    &limits.labels,
                )?,
            )
        }
        Payload::Folded {
            text,
            profile_type,
            delta,
            duration,
        } => {
            let (symbols, stacks, values) = parse_folded(&text)?;
            let profile_type = ProfileType {
                name: clean_part(name.as_deref().unwrap_or(&profile_type.name), "profile"),
                sample_type: clean_part(&profile_type.sample_type, "samples"),
                sample_unit: clean_part(&profile_type.sample_unit, "count"),
                period_type: clean_part(&profile_type.period_type, "unknown"),
                period_unit: clean_part(&profile_type.period_unit, "unknown"),
            };
            let rows = ProfileRows {
                profile_type,
                delta,
                labels: series,
                time: request.received_at,
                duration,
                period: 1,
                stacks,
                values,
                links: Links::default(),
            };
            (text.len(), (symbols, vec![rows]))
        }
    };
    normalized.1.retain(|p| !p.values.is_empty());
    if let Some(deep) = normalized
        .0
        .stacks
        .iter()
        .find(|s| s.locations.len() > limits.max_stack_depth)
    {
        return Err(Error::InvalidProfile {
            reason: format!(
                "a stack has {} frames, the limit is {}",
                deep.locations.len(),
                limits.max_stack_depth
            ),
        });
    }
    for row in &mut normalized.1 {
        // i64::MAX is the open end of every time range; nothing is stored there.
        row.time = row.time.min(Nanos(i64::MAX - 1));
    }
    Ok(Normalized {
        tenant: request.tenant,
        symbols: normalized.0,
        profiles: normalized.1,
        input_bytes,
    })
}

/// The profile name when the client sent no `__name__`: from the period type, as the
/// Pyroscope conventions name Go's profiles.
fn default_name(period_type: &str) -> &str {
    match period_type {
        "cpu" => "process_cpu",
        "space" => "memory",
        "" => "profile",
        other => other,
    }
}

fn from_pprof(
    profile: ValidProfile,
    name: Option<&str>,
    series: &Labels,
    received_at: Nanos,
    label_limits: &LabelLimits,
) -> Result<(LocalSymbols, Vec<ProfileRows>)> {
    let p = profile.profile();
    let symbols = local_symbols(&profile);

    let period_type = p
        .period_type
        .map(|pt| (profile.string(pt.r#type), profile.string(pt.unit)));
    let (period_type, period_unit) = period_type.unwrap_or(("", ""));
    let name = clean_part(name.unwrap_or_else(|| default_name(period_type)), "profile");
    let types: Vec<ProfileType> = p
        .sample_type
        .iter()
        .map(|vt| ProfileType {
            name: name.clone(),
            sample_type: clean_part(profile.string(vt.r#type), "samples"),
            sample_unit: clean_part(profile.string(vt.unit), "count"),
            period_type: clean_part(period_type, "unknown"),
            period_unit: clean_part(period_unit, "unknown"),
        })
        .collect();
    let time = if p.time_nanos > 0 {
        Nanos(p.time_nanos)
    } else {
        received_at
    };

    // Stacks, deduplicated within this write.
    let mut stack_refs: HashMap<StackId, SymbolRef> = HashMap::default();
    let mut stacks: Vec<Stack> = Vec::new();
    // Label groups: samples with the same string labels share profile rows.
    let mut groups: HashMap<Vec<(i64, i64)>, usize> = HashMap::default();
    let mut group_labels: Vec<Labels> = Vec::new();
    // Per group, per sample type: (stack, value, links).
    let mut rows: Vec<Vec<ProfileRows>> = Vec::new();

    for sample in &p.sample {
        let locations: Vec<SymbolRef> = sample
            .location_id
            .iter()
            .map(|id| profile.location_position(*id) as SymbolRef)
            .collect();
        let id =
            symbols::stack_fingerprint(locations.iter().map(|&l| symbols.locations[l as usize].0));
        let stack = *stack_refs.entry(id).or_insert_with(|| {
            stacks.push(Stack {
                id,
                locations: locations.into(),
            });
            (stacks.len() - 1) as SymbolRef
        });

        let mut key: Vec<(i64, i64)> = Vec::new();
        let mut links: [Option<&str>; 3] = [None; 3];
        for label in &sample.label {
            if label.str == 0 || profile.string(label.str).is_empty() {
                continue; // numeric labels and empty values are not stored
            }
            let k = profile.string(label.key);
            match labels::LINK_LABELS.iter().position(|&l| l == k) {
                Some(i) => {
                    let value = profile.string(label.str);
                    labels::validate_pair(k, value, label_limits)?;
                    links[i] = Some(value);
                }
                None => key.push((label.key, label.str)),
            }
        }
        key.sort_unstable();
        key.dedup_by_key(|(k, _)| *k);
        let group = match groups.get(&key) {
            Some(&g) => g,
            None => {
                let mut labels = series.clone();
                for &(k, v) in &key {
                    let mut name = labels::sanitize_name(profile.string(k));
                    if labels.get(&name).is_some() {
                        name = format!("exported_{name}");
                    }
                    let value = profile.string(v).to_owned();
                    labels::validate_pair(&name, &value, label_limits)?;
                    labels.insert(name, value);
                }
                labels.check_count(label_limits)?;
                group_labels.push(labels.clone());
                rows.push(
                    types
                        .iter()
                        .map(|t| ProfileRows {
                            profile_type: t.clone(),
                            delta: p.duration_nanos > 0,
                            labels: labels.clone(),
                            time,
                            duration: Nanos(p.duration_nanos.max(0)),
                            period: p.period,
                            stacks: Vec::new(),
                            values: Vec::new(),
                            links: Links::default(),
                        })
                        .collect(),
                );
                groups.insert(key, rows.len() - 1);
                rows.len() - 1
            }
        };
        for (t, &value) in sample.value.iter().enumerate() {
            if value == 0 {
                continue;
            }
            let row = &mut rows[group][t];
            let n = row.values.len();
            row.stacks.push(stack);
            row.values.push(value);
            push_link(&mut row.links.trace_id, n, links[0]);
            push_link(&mut row.links.span_id, n, links[1]);
            push_link(&mut row.links.profile_id, n, links[2]);
        }
    }
    let mut symbols = symbols;
    symbols.stacks = stacks;
    // The string table moves over: its refs are the pprof's own string indices.
    symbols.strings = profile.into_profile().string_table;
    if symbols.strings.is_empty() {
        symbols.strings.push(String::new());
    }
    let mut out: Vec<ProfileRows> = rows.into_iter().flatten().collect();
    for row in &mut out {
        let n = row.values.len();
        for c in [
            &mut row.links.trace_id,
            &mut row.links.span_id,
            &mut row.links.profile_id,
        ]
        .into_iter()
        .flatten()
        {
            c.resize(n, None);
        }
    }
    Ok((symbols, out))
}

/// Appends a link value at position `n`, creating the column (null-filled) on first use.
fn push_link(column: &mut Option<Vec<Option<String>>>, n: usize, value: Option<&str>) {
    match (column.as_mut(), value) {
        (Some(c), v) => {
            c.resize(n, None);
            c.push(v.map(str::to_owned));
        }
        (None, Some(v)) => {
            let mut c = vec![None; n];
            c.push(Some(v.to_owned()));
            *column = Some(c);
        }
        (None, None) => {}
    }
}

/// The profile's tables as local symbols: string refs are pprof string indices, mapping,
/// function and location refs are table positions. Each location carries its fingerprint.
/// The strings are left for the caller to move in once it is done reading the profile.
fn local_symbols(profile: &ValidProfile) -> LocalSymbols {
    let p = profile.profile();
    let mappings = p
        .mapping
        .iter()
        .map(|m| symbols::Mapping {
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: m.filename as SymbolRef,
            build_id: m.build_id as SymbolRef,
            flags: u32::from(m.has_functions)
                | u32::from(m.has_filenames) << 1
                | u32::from(m.has_line_numbers) << 2
                | u32::from(m.has_inline_frames) << 3,
        })
        .collect();
    let functions = p
        .function
        .iter()
        .map(|f| symbols::Function {
            name: f.name as SymbolRef,
            system_name: f.system_name as SymbolRef,
            filename: f.filename as SymbolRef,
            start_line: f.start_line,
        })
        .collect();
    let locations = p
        .location
        .iter()
        .map(|l| {
            let mapping = profile.mapping(l.mapping_id).map(|m| MappingView {
                identity: if m.build_id != 0 {
                    profile.string(m.build_id)
                } else {
                    profile.string(m.filename)
                },
                memory_start: m.memory_start,
                file_offset: m.file_offset,
            });
            let key = symbols::location_fingerprint(
                mapping,
                l.address,
                l.line.iter().map(|line| {
                    let f = profile.function(line.function_id);
                    (
                        FunctionView {
                            name: profile.string(f.name),
                            system_name: profile.string(f.system_name),
                            filename: profile.string(f.filename),
                            start_line: f.start_line,
                        },
                        line.line,
                    )
                }),
                l.is_folded,
            );
            let location = symbols::Location {
                mapping: profile
                    .mapping_position(l.mapping_id)
                    .map_or(0, |i| i as u32 + 1),
                address: l.address,
                lines: l
                    .line
                    .iter()
                    .map(|line| symbols::Line {
                        function: profile.function_position(line.function_id) as SymbolRef,
                        line: line.line,
                    })
                    .collect(),
                is_folded: l.is_folded,
            };
            (key, location)
        })
        .collect();
    LocalSymbols {
        strings: Vec::new(),
        mappings,
        functions,
        locations,
        stacks: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
