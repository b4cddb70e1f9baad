//! OTLP profiles to pprof, one pprof per OTLP profile, as Pyroscope maps them:
//!
//! - labels: resource and scope attributes with string values, then the profile's own, names
//!   sanitised (`k8s.pod.name` → `k8s_pod_name`), `service.name` → `service_name` (else
//!   `unknown_service`, or `unknown_service:<process.executable.name>`); `__name__` from the
//!   sample type (`process_cpu` for CPU time, `off_cpu`, `memory` for allocations and heap,
//!   else the sample type itself);
//! - samples: the stack's locations (leaf first, as pprof), the value the sum of `values` or,
//!   without values, one per timestamp; scalar sample attributes become pprof labels (integers
//!   numeric ones, the rest as text); a link becomes `trace_id`/`span_id`, a profile id `profile_id` (all hex);
//! - `samples:count` sampled every `cpu:nanoseconds` period becomes CPU time (count × period,
//!   what the eBPF profiler sends), unless the same scope also has the CPU time profile;
//! - a missing time is the receive time; a missing duration 10 s (OTLP profiles are deltas).
//!
//! Only what a profile's stacks reference goes into its pprof, with dense ids, so a request's
//! profiles never copy its whole dictionary each.

use axum::body::Bytes;
use firn_storage::Nanos;
use firn_storage::labels::sanitize_name;
use firn_storage::pprof::proto;
use prost::Message;

use super::check::check_dictionary;
use super::messages::{
    AnyValue, ExportProfilesServiceRequest, KeyValue, Profile, ProfilesDictionary, ValueType,
};
use super::pprof::PprofBuilder;
use crate::api::push::RawSeries;
use crate::error::{Error, Result};

/// Profiles one request may carry.
pub const MAX_PROFILES: usize = 10_000;
/// Stack frames a request's samples may reference in all: a sample names its stack by index,
/// so a small request could otherwise expand into huge profiles.
pub const MAX_FRAMES: usize = 8 << 20;
/// What a profile without a duration is taken to cover.
const DEFAULT_DURATION: Nanos = Nanos(10_000_000_000);
/// Mapping attributes that carry the executable's build id.
pub(super) const BUILD_ID_KEYS: [&str; 3] = [
    "process.executable.build_id.gnu",
    "process.executable.build_id.go",
    "process.executable.build_id.htlhash",
];

/// Attributes of one resource, scope or profile that may become labels, at most.
pub const MAX_ATTRIBUTES: usize = 256;

/// Checks the whole request and converts each profile to a series of one pprof sample. The
/// profiles may take at most four times the request's bytes (plus a MiB): the dictionary is
/// shared, so a small request could otherwise name the same big entries from many profiles.
pub fn to_series(request: ExportProfilesServiceRequest, received: Nanos) -> Result<Vec<RawSeries>> {
    let mut budget = 4 * prost::Message::encoded_len(&request) + (1 << 20);
    let dictionary = request.dictionary.unwrap_or_default();
    check_dictionary(&dictionary)?;
    let profiles: usize = request
        .resource_profiles
        .iter()
        .flat_map(|r| &r.scope_profiles)
        .map(|s| s.profiles.len())
        .sum();
    if profiles > MAX_PROFILES {
        return Err(Error::BadRequest(format!(
            "the request has {profiles} profiles, the limit is {MAX_PROFILES}"
        )));
    }
    let d = &dictionary;
    let frames: usize = request
        .resource_profiles
        .iter()
        .flat_map(|r| &r.scope_profiles)
        .flat_map(|s| &s.profiles)
        .flat_map(|p| &p.samples)
        .map(|s| {
            usize::try_from(s.stack_index)
                .ok()
                .and_then(|i| d.stack_table.get(i))
                .map_or(0, |stack| stack.location_indices.len())
        })
        .sum();
    if frames > MAX_FRAMES {
        return Err(Error::BadRequest(format!(
            "the request's samples reference {frames} stack frames in all, the limit is {MAX_FRAMES}"
        )));
    }
    let mut out = Vec::with_capacity(profiles);
    for (r, resource) in request.resource_profiles.iter().enumerate() {
        let mut base = Vec::new();
        let attributes = resource.resource.as_ref().map(|r| r.attributes.as_slice());
        add_key_values(
            &mut base,
            attributes.unwrap_or_default(),
            d,
            &format!("resource_profiles[{r}].resource"),
        )?;
        for (s, scope) in resource.scope_profiles.iter().enumerate() {
            let path = format!("resource_profiles[{r}].scope_profiles[{s}]");
            let mut labels = base.clone();
            let scope_attributes = scope.scope.as_ref().map(|s| s.attributes.as_slice());
            add_key_values(
                &mut labels,
                scope_attributes.unwrap_or_default(),
                d,
                &format!("{path}.scope"),
            )?;
            let has_cpu_time = scope.profiles.iter().any(|p| {
                p.sample_type
                    .as_ref()
                    .is_some_and(|t| value_type(d, t) == ("cpu", "nanoseconds"))
            });
            for (p, profile) in scope.profiles.iter().enumerate() {
                let path = format!("{path}.profiles[{p}]");
                out.push(convert_profile(
                    d,
                    profile,
                    labels.clone(),
                    has_cpu_time,
                    received,
                    path,
                    &mut budget,
                )?);
            }
        }
    }
    Ok(out)
}

/// Checks an index into a table of `len` entries (`field` names it, built only for an error).
pub(super) fn index(i: i32, len: usize, field: impl FnOnce() -> String) -> Result<usize> {
    match usize::try_from(i) {
        Ok(i) if i == 0 || i < len => Ok(i),
        _ => Err(Error::BadRequest(format!(
            "{} is {i}, past its table of {len} entries",
            field()
        ))),
    }
}

/// The string at `i` (checked), `""` for an empty table.
pub(super) fn string(d: &ProfilesDictionary, i: i32) -> &str {
    d.string_table
        .get(usize::try_from(i).unwrap_or(0))
        .map_or("", String::as_str)
}

fn value_type<'a>(d: &'a ProfilesDictionary, t: &ValueType) -> (&'a str, &'a str) {
    (string(d, t.type_strindex), string(d, t.unit_strindex))
}

/// A scalar attribute value as text (arrays, maps and bytes have none).
pub(super) fn scalar(d: &ProfilesDictionary, v: &AnyValue) -> Option<String> {
    if let Some(s) = &v.string_value {
        return Some(s.clone());
    }
    if let Some(i) = v.string_value_strindex {
        return Some(string(d, i).to_owned());
    }
    v.int_value
        .map(|i| i.to_string())
        .or_else(|| v.bool_value.map(|b| b.to_string()))
        .or_else(|| v.double_value.map(|f| f.to_string()))
}

/// Resource or scope attributes with string values as labels.
fn add_key_values(
    labels: &mut Vec<(String, String)>,
    attributes: &[KeyValue],
    d: &ProfilesDictionary,
    path: &str,
) -> Result<()> {
    check_attribute_count(attributes.len(), path)?;
    for (i, kv) in attributes.iter().enumerate() {
        let key = if kv.key.is_empty() {
            let at = index(kv.key_strindex, d.string_table.len(), || {
                format!("{path}.attributes[{i}].key_strindex")
            })?;
            d.string_table.get(at).cloned().unwrap_or_default()
        } else {
            kv.key.clone()
        };
        let Some(value) = kv.value.as_ref() else {
            continue;
        };
        if let Some(s) = value.string_value_strindex {
            index(s, d.string_table.len(), || {
                format!("{path}.attributes[{i}].value.string_value_strindex")
            })?;
        }
        if value.string_value.is_some() || value.string_value_strindex.is_some() {
            let text = scalar(d, value).unwrap_or_default();
            set_label(labels, &key, text);
        }
    }
    Ok(())
}

fn check_attribute_count(n: usize, path: &str) -> Result<()> {
    if n > MAX_ATTRIBUTES {
        return Err(Error::BadRequest(format!(
            "{path} has {n} attributes, the limit is {MAX_ATTRIBUTES}"
        )));
    }
    Ok(())
}

fn set_label(labels: &mut Vec<(String, String)>, key: &str, value: String) {
    let name = if key == "service.name" {
        "service_name".to_owned()
    } else {
        // Prometheus-style names, as Pyroscope writes OpenTelemetry's attributes.
        sanitize_name(key).replace('.', "_")
    };
    labels.retain(|(n, _)| *n != name);
    labels.push((name, value));
}

/// The profile's name (`__name__`) from its sample type.
fn profile_name(sample_type: &str) -> String {
    match sample_type {
        "cpu" | "samples" => "process_cpu".into(),
        "off_cpu" => "off_cpu".into(),
        "alloc_objects" | "alloc_space" | "inuse_objects" | "inuse_space" => "memory".into(),
        other => sanitize_name(other),
    }
}

fn convert_profile(
    d: &ProfilesDictionary,
    profile: &Profile,
    mut labels: Vec<(String, String)>,
    scope_has_cpu_time: bool,
    received: Nanos,
    path: String,
    budget: &mut usize,
) -> Result<RawSeries> {
    check_attribute_count(profile.attribute_indices.len(), &path)?;
    for (i, &a) in profile.attribute_indices.iter().enumerate() {
        let at = index(a, d.attribute_table.len(), || {
            format!("{path}.attribute_indices[{i}]")
        })?;
        if let Some(attr) = d.attribute_table.get(at).filter(|_| at != 0)
            && let Some(v) = attr.value.as_ref()
            && (v.string_value.is_some() || v.string_value_strindex.is_some())
        {
            set_label(
                &mut labels,
                string(d, attr.key_strindex),
                scalar(d, v).unwrap_or_default(),
            );
        }
    }
    let sample_type = profile
        .sample_type
        .as_ref()
        .ok_or_else(|| Error::BadRequest(format!("{path}.sample_type is required")))?;
    for (field, t) in [
        ("sample_type", Some(sample_type)),
        ("period_type", profile.period_type.as_ref()),
    ] {
        if let Some(t) = t {
            index(t.type_strindex, d.string_table.len(), || {
                format!("{path}.{field}.type_strindex")
            })?;
            index(t.unit_strindex, d.string_table.len(), || {
                format!("{path}.{field}.unit_strindex")
            })?;
        }
    }
    let (mut kind, mut unit) = value_type(d, sample_type);
    let period_type = profile.period_type.as_ref().map(|t| value_type(d, t));
    let mut multiplier = 1i64;
    if (kind, unit) == ("samples", "count")
        && period_type == Some(("cpu", "nanoseconds"))
        && profile.period > 0
        && !scope_has_cpu_time
    {
        (kind, unit, multiplier) = ("cpu", "nanoseconds", profile.period);
    }
    if !labels.iter().any(|(n, _)| n == "service_name") {
        let executable = labels
            .iter()
            .find(|(n, _)| n == "process_executable_name")
            .map(|(_, v)| v.clone());
        let name = match executable {
            Some(e) => format!("unknown_service:{e}"),
            None => "unknown_service".into(),
        };
        labels.push(("service_name".into(), name));
    }
    labels.retain(|(n, _)| n != "__name__");
    labels.push(("__name__".into(), profile_name(kind)));

    let mut b = PprofBuilder::new(d);
    let sample_type = proto::ValueType {
        r#type: b.string(kind),
        unit: b.string(unit),
    };
    let profile_id = hex_unless_zero(&profile.profile_id);
    for (i, sample) in profile.samples.iter().enumerate() {
        let at = format!("{path}.samples[{i}]");
        let stack = index(sample.stack_index, d.stack_table.len(), || {
            format!("{at}.stack_index")
        })?;
        let link = index(sample.link_index, d.link_table.len(), || {
            format!("{at}.link_index")
        })?;
        if !sample.values.is_empty()
            && !sample.timestamps_unix_nano.is_empty()
            && sample.values.len() != sample.timestamps_unix_nano.len()
        {
            return Err(Error::BadRequest(format!(
                "{at} has {} values and {} timestamps; with both, they pair up",
                sample.values.len(),
                sample.timestamps_unix_nano.len()
            )));
        }
        let value = if sample.values.is_empty() {
            sample.timestamps_unix_nano.len() as i64
        } else {
            sample.values.iter().fold(0i64, |t, v| t.saturating_add(*v))
        }
        .saturating_mul(multiplier);
        if value == 0 {
            continue;
        }
        let location_id: Vec<u64> = d
            .stack_table
            .get(stack)
            .map(|s| {
                s.location_indices
                    .iter()
                    .map(|&l| b.location(l as usize))
                    .collect()
            })
            .unwrap_or_default();
        let mut label = Vec::new();
        for (j, &a) in sample.attribute_indices.iter().enumerate() {
            let a = index(a, d.attribute_table.len(), || {
                format!("{at}.attribute_indices[{j}]")
            })?;
            if let Some(attr) = d.attribute_table.get(a).filter(|_| a != 0)
                && let Some(v) = attr.value.as_ref()
            {
                let key = b.string(string(d, attr.key_strindex));
                if let Some(n) = v.int_value {
                    let num_unit = b.string(string(d, attr.unit_strindex));
                    label.push(proto::Label {
                        key,
                        num: n,
                        num_unit,
                        ..Default::default()
                    });
                } else if let Some(text) = scalar(d, v) {
                    let str = b.string(&text);
                    label.push(proto::Label {
                        key,
                        str,
                        ..Default::default()
                    });
                }
            }
        }
        if let Some(l) = d.link_table.get(link).filter(|_| link != 0) {
            for (key, id) in [("trace_id", &l.trace_id), ("span_id", &l.span_id)] {
                if let Some(hex) = hex_unless_zero(id) {
                    let (key, str) = (b.string(key), b.string(&hex));
                    label.push(proto::Label {
                        key,
                        str,
                        ..Default::default()
                    });
                }
            }
        }
        if let Some(id) = &profile_id {
            let (key, str) = (b.string("profile_id"), b.string(id));
            label.push(proto::Label {
                key,
                str,
                ..Default::default()
            });
        }
        b.spent += 16 + 8 * location_id.len() + 32 * label.len();
        b.out.sample.push(proto::Sample {
            location_id,
            value: vec![value],
            label,
        });
        let labels_bytes: usize = labels.iter().map(|(n, v)| n.len() + v.len()).sum();
        if b.spent + labels_bytes > *budget {
            return Err(Error::BadRequest(format!(
                "{path}: the request's profiles expand past {} bytes, four times the request; send fewer profiles per request",
                *budget
            )));
        }
    }
    *budget -= b.spent + labels.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
    b.out.sample_type = vec![sample_type];
    if let Some((t, u)) = period_type {
        b.out.period_type = Some(proto::ValueType {
            r#type: b.string(t),
            unit: b.string(u),
        });
    }
    b.out.period = profile.period;
    b.out.time_nanos = match i64::try_from(profile.time_unix_nano) {
        Ok(0) => received.0,
        Ok(t) => t,
        Err(_) => {
            return Err(Error::BadRequest(format!(
                "{path}.time_unix_nano is {}, after the year 2262",
                profile.time_unix_nano
            )));
        }
    };
    b.out.duration_nanos = match i64::try_from(profile.duration_nano) {
        Ok(0) => DEFAULT_DURATION.0,
        Ok(n) => n,
        Err(_) => {
            return Err(Error::BadRequest(format!(
                "{path}.duration_nano is {}, too long",
                profile.duration_nano
            )));
        }
    };
    let bytes = b.finish().encode_to_vec();
    Ok(RawSeries {
        name: path,
        labels,
        samples: vec![Bytes::from(bytes)],
    })
}

/// Lowercase hex of an id, `None` when it is empty or all zero (unset).
fn hex_unless_zero(id: &[u8]) -> Option<String> {
    if id.iter().all(|&b| b == 0) {
        return None;
    }
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests;
