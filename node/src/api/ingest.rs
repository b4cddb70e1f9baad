//! `POST /ingest` (and `/pyroscope/ingest`): Pyroscope's legacy ingest API, as pyroscope-go,
//! pyroscope-io 0.8, the Node SDK and many scripts use it. Success is exactly 200 with an empty
//! body. Wire facts: `../shared/reference/wire-apis.md` §2.3.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use firn_storage::{Nanos, Payload, ProfileType, TenantId, WriteRequest};
use serde::Deserialize;

use crate::api::{AppState, content_decoded, idempotency_key, tenant};
use crate::error::{Error, Result};
use crate::time::{now, parse_time};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestParams {
    name: Option<String>,
    from: Option<String>,
    until: Option<String>,
    format: Option<String>,
    sample_rate: Option<String>,
    spy_name: Option<String>,
}

pub async fn ingest(
    State(state): State<AppState>,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode> {
    let tenant = tenant(&headers)?;
    let key = idempotency_key(&headers, &tenant)?;
    let request = ingest_request(tenant, &params, &headers, body, state.max_request_bytes)?;
    state.cluster.write_one(request, key).await?;
    Ok(StatusCode::OK)
}

/// Builds the write an `/ingest` request describes.
fn ingest_request(
    tenant: TenantId,
    params: &IngestParams,
    headers: &HeaderMap,
    body: Bytes,
    max_bytes: usize,
) -> Result<WriteRequest> {
    let name = params
        .name
        .as_deref()
        .ok_or_else(|| Error::BadRequest("query parameter `name` is required".into()))?;
    let (app, labels) = parse_name(name)?;
    let received = now();
    let from = match &params.from {
        Some(t) => parse_time(t, received).map_err(|e| Error::BadRequest(format!("from: {e}")))?,
        None => received,
    };
    let until = match &params.until {
        Some(t) => parse_time(t, received).map_err(|e| Error::BadRequest(format!("until: {e}")))?,
        None => received,
    };
    let sample_rate = params
        .sample_rate
        .as_deref()
        .and_then(|r| r.parse::<i64>().ok())
        .filter(|&r| r > 0)
        .unwrap_or(100);
    let body = content_decoded(headers, body, max_bytes)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = params.format.as_deref().unwrap_or("");
    match format {
        "trie" | "tree" | "speedscope" | "jfr" => {
            return Err(Error::UnsupportedMediaType(format!(
                "format={format} is not supported; send pprof (format=pprof or multipart), folded text or format=lines"
            )));
        }
        _ if content_type.contains("octet-stream+trie")
            || content_type.contains("octet-stream+tree") =>
        {
            return Err(Error::UnsupportedMediaType(format!(
                "Content-Type {content_type} (legacy trie/tree) is not supported; send pprof or folded text"
            )));
        }
        _ => {}
    }

    let mut series: Vec<(String, String)> = labels
        .into_iter()
        .filter(|(k, _)| !k.starts_with("__") || k == "__session_id__")
        .collect();
    if format == "pprof" || content_type.contains("multipart/form-data") {
        let profile = if content_type.contains("multipart/form-data") {
            multipart_profile(content_type, body)?
        } else {
            body
        };
        if !series.iter().any(|(k, _)| k == "service_name") {
            series.push(("service_name".into(), app.clone()));
        }
        if let Some(spy) = &params.spy_name {
            series.push(("pyroscope_spy".into(), spy.clone()));
        }
        return Ok(WriteRequest {
            tenant,
            labels: series,
            payload: Payload::Pprof(profile),
            received_at: from,
        });
    }

    // Folded text ("groups") or one stack per line: the app name's last dot-component names
    // the profile type.
    let (service, profile_type, scale) = text_profile_type(&app, sample_rate)?;
    if series.iter().any(|(k, _)| k == "service_name") {
        series.push(("app_name".into(), service));
    } else {
        series.push(("service_name".into(), service));
    }
    series.push(("__name__".into(), profile_type.name.clone()));
    let text = if format == "lines" {
        lines_to_folded(&body, scale)?
    } else {
        scale_folded(&body, scale)?
    };
    Ok(WriteRequest {
        tenant,
        labels: series,
        payload: Payload::Folded {
            text: text.into(),
            profile_type,
            delta: true,
            duration: Nanos(until.0.saturating_sub(from.0).max(0)),
        },
        received_at: from,
    })
}

/// The `profile` part of a multipart upload (pyroscope-go, the Node SDK).
fn multipart_profile(content_type: &str, body: Bytes) -> Result<Bytes> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"').to_owned())
        .ok_or_else(|| Error::BadRequest("multipart Content-Type has no boundary".into()))?;
    let mut profile = None;
    for (name, data) in multipart_parts(&body, &boundary)? {
        match name.as_str() {
            "profile" => profile = Some(data),
            "prev_profile" => {
                return Err(Error::BadRequest(
                    "multipart part `prev_profile` (cumulative diff mode) is not supported; upgrade the client".into(),
                ));
            }
            _ => {}
        }
    }
    profile.ok_or_else(|| Error::BadRequest("multipart upload has no `profile` part".into()))
}

/// Splits a multipart/form-data body into (field name, data) parts.
fn multipart_parts(body: &Bytes, boundary: &str) -> Result<Vec<(String, Bytes)>> {
    let bad = |what: &str| Error::BadRequest(format!("multipart body is malformed: {what}"));
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest: &[u8] = body;
    let start = find(rest, delimiter.as_bytes()).ok_or_else(|| bad("no opening boundary"))?;
    rest = &rest[start + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        let rest_after_crlf = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| bad("boundary not followed by CRLF"))?;
        let header_end =
            find(rest_after_crlf, b"\r\n\r\n").ok_or_else(|| bad("part headers do not end"))?;
        let head = std::str::from_utf8(&rest_after_crlf[..header_end])
            .map_err(|_| bad("part headers are not UTF-8"))?;
        let data_start = header_end + 4;
        let next = format!("\r\n{delimiter}");
        let data_len = find(&rest_after_crlf[data_start..], next.as_bytes())
            .ok_or_else(|| bad("no closing boundary"))?;
        let name = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .and_then(|l| {
                l.split(';')
                    .filter_map(|p| p.trim().strip_prefix("name="))
                    .next()
            })
            .map(|n| n.trim_matches('"').to_owned())
            .unwrap_or_default();
        let offset = body.len() - rest_after_crlf.len() + data_start;
        parts.push((name, body.slice(offset..offset + data_len)));
        rest = &rest_after_crlf[data_start + data_len + next.len()..];
    }
    Ok(parts)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses `app.name{key=value,key2=value2}`.
pub fn parse_name(name: &str) -> Result<(String, BTreeMap<String, String>)> {
    let bad = |reason: String| Error::BadRequest(format!("name {name:?}: {reason}"));
    let (app, rest) = match name.find('{') {
        Some(i) => (name[..i].trim(), Some(&name[i + 1..])),
        None => (name.trim(), None),
    };
    if app.is_empty() {
        return Err(bad("the application name is empty".into()));
    }
    if let Some(c) = app
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')))
    {
        return Err(bad(format!(
            "application names use A-Z a-z 0-9 _ . / -, not {c:?}"
        )));
    }
    let mut labels = BTreeMap::new();
    if let Some(rest) = rest {
        let inner = rest.split('}').next().unwrap_or("");
        for pair in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("label {pair:?} is not key=value")))?;
            let k = k.trim();
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                return Err(bad(format!(
                    "label name {k:?} must be non-empty A-Z a-z 0-9 _ ."
                )));
            }
            labels.insert(k.to_owned(), v.trim().to_owned());
        }
    }
    Ok((app.to_owned(), labels))
}

/// The service and profile type of a text upload from its app name's suffix, and the factor
/// its counts are multiplied by (the sampling period for CPU and wall time).
fn text_profile_type(app: &str, sample_rate: i64) -> Result<(String, ProfileType, i64)> {
    let (service, suffix) = match app.rsplit_once('.') {
        Some((service, suffix)) => (service, suffix),
        None => (app, "cpu"),
    };
    let period = 1_000_000_000 / sample_rate.max(1);
    let (name, sample_type, unit, period_type, period_unit, scale) = match suffix {
        "cpu" | "itimer" => (
            "process_cpu",
            "cpu",
            "nanoseconds",
            "cpu",
            "nanoseconds",
            period,
        ),
        "wall" | "seconds" | "nanoseconds" | "microseconds" | "milliseconds" => {
            ("wall", "wall", "nanoseconds", "wall", "nanoseconds", period)
        }
        "inuse_objects" | "alloc_objects" | "live" => {
            ("memory", suffix, "count", "space", "bytes", 1)
        }
        "inuse_space" | "alloc_space" => ("memory", suffix, "bytes", "space", "bytes", 1),
        "goroutines" => ("goroutine", "goroutines", "count", "goroutine", "count", 1),
        "mutex_count" => ("mutex", "contentions", "count", "contentions", "count", 1),
        "mutex_duration" => ("mutex", "delay", "nanoseconds", "contentions", "count", 1),
        "block_count" | "lock_count" => {
            ("block", "contentions", "count", "contentions", "count", 1)
        }
        "block_duration" | "lock_duration" => {
            ("block", "delay", "nanoseconds", "contentions", "count", 1)
        }
        "exceptions" => ("exceptions", "samples", "count", "exceptions", "count", 1),
        "bytes" => ("memory", "samples", "bytes", "space", "bytes", 1),
        other => {
            return Err(Error::BadRequest(format!(
                "name {app:?}: unknown profile type {other:?} (the part after the last dot); use cpu, wall, inuse_space, alloc_objects, goroutines, mutex_count, block_duration, ..."
            )));
        }
    };
    let id = format!("{name}:{sample_type}:{unit}:{period_type}:{period_unit}");
    Ok((service.to_owned(), ProfileType::parse(&id)?, scale))
}

/// Folded text with every count multiplied by `scale` (checked, so an overflow is an error).
fn scale_folded(text: &[u8], scale: i64) -> Result<Vec<u8>> {
    if scale == 1 {
        return Ok(text.to_vec());
    }
    let mut out = Vec::with_capacity(text.len() + text.len() / 4);
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad =
            |reason: &str| Error::BadRequest(format!("folded stacks line {}: {reason}", i + 1));
        let split = line
            .iter()
            .rposition(|&b| b == b' ')
            .ok_or_else(|| bad("expected `frame;frame;... value`"))?;
        let count: i64 = std::str::from_utf8(&line[split + 1..])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad("the value is not an integer"))?;
        let scaled = count
            .checked_mul(scale)
            .ok_or_else(|| bad("the value times the sampling period overflows 64 bits"))?;
        out.extend_from_slice(&line[..split]);
        out.extend_from_slice(format!(" {scaled}\n").as_bytes());
    }
    Ok(out)
}

/// `format=lines`: one stack per line, each occurrence counting one sample.
fn lines_to_folded(text: &[u8], scale: i64) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 4);
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(format!(" {scale}\n").as_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_labels() {
        let (app, labels) = parse_name("my-app.cpu{env=prod, region = eu-1 }").expect("valid");
        assert_eq!(app, "my-app.cpu");
        assert_eq!(labels["env"], "prod");
        assert_eq!(labels["region"], "eu-1");
        assert!(parse_name("").is_err());
        assert!(parse_name("app{novalue}").is_err());
        let err = parse_name("app name").expect_err("space").to_string();
        assert!(err.contains("application names"), "{err}");
    }

    #[test]
    fn text_uploads_take_their_profile_type_from_the_suffix() {
        let (service, pt, scale) = text_profile_type("api.cpu", 100).expect("cpu");
        assert_eq!(service, "api");
        assert_eq!(pt.id(), "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        assert_eq!(scale, 10_000_000);
        let (service, pt, _) = text_profile_type("api", 100).expect("no suffix means cpu");
        assert_eq!((service.as_str(), pt.name.as_str()), ("api", "process_cpu"));
        let err = text_profile_type("my.app", 100)
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("unknown profile type \"app\""), "{err}");
        let (_, pt, scale) = text_profile_type("api.alloc_space", 100).expect("memory");
        assert_eq!(
            (pt.id().as_str(), scale),
            ("memory:alloc_space:bytes:space:bytes", 1)
        );
    }

    #[test]
    fn counts_scale_by_the_period_and_overflow_is_an_error() {
        assert_eq!(
            scale_folded(b"a;b 3\r\n\na;c 1", 10).expect("valid"),
            b"a;b 30\na;c 10\n"
        );
        assert!(scale_folded(b"a;b x", 10).is_err());
        let err = scale_folded(format!("a {}", i64::MAX).as_bytes(), 10)
            .expect_err("overflow")
            .to_string();
        assert!(err.contains("line 1"), "{err}");
        assert_eq!(
            lines_to_folded(b"a;b\na;b\n", 5).expect("lines"),
            b"a;b 5\na;b 5\n"
        );
    }

    #[test]
    fn multipart_bodies_yield_the_profile_part() {
        let body = Bytes::from_static(
            b"--XX\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\nPPROF\r\n--XX\r\nContent-Disposition: form-data; name=\"sample_type_config\"; filename=\"c.json\"\r\n\r\n{}\r\n--XX--\r\n",
        );
        let profile = multipart_profile("multipart/form-data; boundary=XX", body).expect("valid");
        assert_eq!(profile.as_ref(), b"PPROF");
        assert!(
            multipart_profile(
                "multipart/form-data; boundary=XX",
                Bytes::from_static(b"junk")
            )
            .is_err()
        );
        assert!(multipart_profile("multipart/form-data", Bytes::new()).is_err());
    }
}
