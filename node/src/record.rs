//! A logged write (the body of a Raft write entry): a write request as it arrived (tenant, labels, payload), so a
//! replay normalises it again exactly as the first time. Protobuf, so fields can be added.

use firn_storage::{Nanos, Payload, ProfileType, TenantId, WriteRequest};
use prost::Message;

#[derive(Clone, PartialEq, Message)]
struct Record {
    #[prost(string, tag = "1")]
    tenant: String,
    #[prost(message, repeated, tag = "2")]
    labels: Vec<Label>,
    #[prost(int64, tag = "3")]
    received_at: i64,
    #[prost(oneof = "Body", tags = "4, 5")]
    body: Option<Body>,
}

#[derive(Clone, PartialEq, Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Body {
    #[prost(bytes = "bytes", tag = "4")]
    Pprof(bytes::Bytes),
    #[prost(message, tag = "5")]
    Folded(Folded),
}

#[derive(Clone, PartialEq, Message)]
struct Folded {
    #[prost(bytes = "bytes", tag = "1")]
    text: bytes::Bytes,
    #[prost(string, tag = "2")]
    profile_type: String,
    #[prost(bool, tag = "3")]
    delta: bool,
    #[prost(int64, tag = "4")]
    duration: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("log record is not valid protobuf")]
    Decode(#[from] prost::DecodeError),
    #[error("log record is not valid: {0}")]
    Invalid(String),
}

pub fn encode(request: &WriteRequest) -> Vec<u8> {
    let body = match &request.payload {
        Payload::Pprof(bytes) => Body::Pprof(bytes.clone()),
        Payload::Folded {
            text,
            profile_type,
            delta,
            duration,
        } => Body::Folded(Folded {
            text: text.clone(),
            profile_type: profile_type.id(),
            delta: *delta,
            duration: duration.0,
        }),
    };
    Record {
        tenant: request.tenant.as_str().to_owned(),
        labels: request
            .labels
            .iter()
            .map(|(name, value)| Label {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        received_at: request.received_at.0,
        body: Some(body),
    }
    .encode_to_vec()
}

/// Decodes a logged write; the payload shares `bytes`' buffer rather than copying it.
pub fn decode(bytes: bytes::Bytes) -> Result<WriteRequest, RecordError> {
    let record = Record::decode(bytes)?;
    let invalid = |e: firn_storage::Error| RecordError::Invalid(e.to_string());
    let payload = match record.body {
        Some(Body::Pprof(bytes)) => Payload::Pprof(bytes),
        Some(Body::Folded(f)) => Payload::Folded {
            text: f.text,
            profile_type: ProfileType::parse(&f.profile_type).map_err(invalid)?,
            delta: f.delta,
            duration: Nanos(f.duration),
        },
        None => return Err(RecordError::Invalid("no payload".into())),
    };
    Ok(WriteRequest {
        tenant: TenantId::new(&record.tenant).map_err(invalid)?,
        labels: record
            .labels
            .into_iter()
            .map(|l| (l.name, l.value))
            .collect(),
        payload,
        received_at: Nanos(record.received_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_and_pprof_round_trip() {
        let folded = WriteRequest {
            tenant: TenantId::new("team-a").expect("valid"),
            labels: vec![("service_name".into(), "api".into())],
            payload: Payload::Folded {
                text: bytes::Bytes::from_static(b"main;work 3\n"),
                profile_type: ProfileType::parse("process_cpu:cpu:nanoseconds:cpu:nanoseconds")
                    .expect("valid"),
                delta: true,
                duration: Nanos(10),
            },
            received_at: Nanos(42),
        };
        let back = decode(encode(&folded).into()).expect("decode");
        assert_eq!(format!("{back:?}"), format!("{folded:?}"));
        let pprof = firn_storage::testing::pprof_write("t", &[("a", "b")], vec![1, 2, 3], Nanos(7));
        let back = decode(encode(&pprof).into()).expect("decode");
        assert_eq!(format!("{back:?}"), format!("{pprof:?}"));
        assert!(decode(bytes::Bytes::from_static(b"\xff\xff")).is_err());
    }
}
