//! A normalised write as bytes: what a server logs and replicates, so a replica applies a
//! write without decoding and normalising the client's profile again (normalising is almost
//! all of a write's cost; applying is a few percent of it).
//!
//! ```text
//!  "FNRM1" [header length u32 LE][header: tenant, rows, stack ids, symbol counts][columns]
//! ```
//!
//! Protobuf both: the header is decoded at once; the symbol columns
//! ([`crate::symbols::PackedSymbols`]) only when the write holds a stack its shard does not know
//! yet. Every reference is checked before anything is applied, so a damaged record is an
//! error, never a panic or a bad buffer.

use prost::Message;

use super::{Links, Normalized, ProfileRows};
use crate::ids::{Nanos, StackId, TenantId};
use crate::labels::Labels;
use crate::profile_type::ProfileType;
use crate::symbols::packed::{check, ids};
use crate::symbols::{PackedSymbols, SymbolCounts, encode_columns};

const MAGIC: &[u8; 5] = b"FNRM1";

#[derive(Clone, PartialEq, Message)]
struct HeaderProto {
    #[prost(string, tag = "1")]
    tenant: String,
    #[prost(uint64, tag = "2")]
    input_bytes: u64,
    /// 16 bytes a stack: its id.
    #[prost(bytes = "vec", tag = "3")]
    stack_ids: Vec<u8>,
    #[prost(uint64, tag = "4")]
    string_bytes: u64,
    #[prost(uint64, tag = "5")]
    locations: u64,
    #[prost(uint64, tag = "6")]
    stack_locations: u64,
    #[prost(message, repeated, tag = "7")]
    profiles: Vec<RowsProto>,
}

#[derive(Clone, PartialEq, Message)]
struct RowsProto {
    #[prost(string, tag = "1")]
    profile_type: String,
    #[prost(bool, tag = "2")]
    delta: bool,
    #[prost(string, repeated, tag = "3")]
    label_names: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    label_values: Vec<String>,
    #[prost(int64, tag = "5")]
    time: i64,
    #[prost(int64, tag = "6")]
    duration: i64,
    #[prost(int64, tag = "7")]
    period: i64,
    #[prost(uint32, repeated, tag = "8")]
    stacks: Vec<u32>,
    #[prost(int64, repeated, tag = "9")]
    values: Vec<i64>,
    #[prost(message, optional, tag = "10")]
    trace_id: Option<LinkProto>,
    #[prost(message, optional, tag = "11")]
    span_id: Option<LinkProto>,
    #[prost(message, optional, tag = "12")]
    profile_id: Option<LinkProto>,
}

/// A per-sample link column: a value a sample, "" where `present` says it has none.
#[derive(Clone, PartialEq, Message)]
struct LinkProto {
    #[prost(string, repeated, tag = "1")]
    values: Vec<String>,
    #[prost(bool, repeated, tag = "2")]
    present: Vec<bool>,
}

fn link(column: &Option<Vec<Option<String>>>) -> Option<LinkProto> {
    column.as_ref().map(|values| LinkProto {
        values: values
            .iter()
            .map(|v| v.clone().unwrap_or_default())
            .collect(),
        present: values.iter().map(Option::is_some).collect(),
    })
}

fn unlink(
    column: Option<LinkProto>,
    samples: usize,
) -> Result<Option<Vec<Option<String>>>, String> {
    let Some(c) = column else {
        return Ok(None);
    };
    if c.values.len() != samples || c.present.len() != samples {
        return Err("a link column's length is not its rows' sample count".into());
    }
    Ok(Some(
        c.values
            .into_iter()
            .zip(c.present)
            .map(|(v, p)| p.then_some(v))
            .collect(),
    ))
}

/// The bytes of a normalised write.
pub fn encode_normalized(n: &Normalized) -> Vec<u8> {
    let (columns, counts) = encode_columns(&n.symbols);
    let mut stack_ids = Vec::with_capacity(16 * n.symbols.stacks.len());
    for stack in &n.symbols.stacks {
        stack_ids.extend_from_slice(&stack.id.to_bytes());
    }
    let header = HeaderProto {
        tenant: n.tenant.as_str().to_owned(),
        input_bytes: n.input_bytes as u64,
        stack_ids,
        string_bytes: counts.string_bytes as u64,
        locations: counts.locations as u64,
        stack_locations: counts.stack_locations as u64,
        profiles: n
            .profiles
            .iter()
            .map(|r| RowsProto {
                profile_type: r.profile_type.id(),
                delta: r.delta,
                label_names: r.labels.iter().map(|(k, _)| k.to_owned()).collect(),
                label_values: r.labels.iter().map(|(_, v)| v.to_owned()).collect(),
                time: r.time.0,
                duration: r.duration.0,
                period: r.period,
                stacks: r.stacks.clone(),
                values: r.values.clone(),
                trace_id: link(&r.links.trace_id),
                span_id: link(&r.links.span_id),
                profile_id: link(&r.links.profile_id),
            })
            .collect(),
    };
    let header_len = header.encoded_len();
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header_len + columns.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header_len as u32).to_le_bytes());
    header.encode(&mut out).expect("a Vec grows to fit");
    out.extend_from_slice(&columns);
    out
}

/// Reads a normalised write written by [`encode_normalized`]: the header and rows now, checked;
/// the symbol columns when first needed (a buffer prepares them before it applies the write).
pub fn decode_normalized(bytes: bytes::Bytes) -> Result<Normalized<PackedSymbols>, String> {
    let body = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or("not a normalised write (bad magic)")?;
    let len = body
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or("a normalised write cut short in its header length")?;
    let header_end = MAGIC.len() + 4 + len;
    let header = bytes
        .get(MAGIC.len() + 4..header_end)
        .ok_or("a normalised write cut short in its header")?;
    let h = HeaderProto::decode(header).map_err(|e| format!("normalised write header: {e}"))?;
    let stack_count = h.stack_ids.len() / 16;
    let stack_ids: Vec<StackId> = ids(&h.stack_ids, stack_count, "stack ids")?
        .into_iter()
        .map(StackId)
        .collect();
    let mut profiles = Vec::with_capacity(h.profiles.len());
    for r in h.profiles {
        let samples = r.values.len();
        if r.stacks.len() != samples {
            return Err("a profile's stacks and values differ in length".into());
        }
        check("sample stack", r.stacks.iter().copied(), stack_count)?;
        if r.label_names.len() != r.label_values.len() {
            return Err("label names and values differ in length".into());
        }
        let profile_type = ProfileType::parse(&r.profile_type).map_err(|e| e.to_string())?;
        profiles.push(ProfileRows {
            profile_type,
            delta: r.delta,
            labels: Labels::from_sorted(r.label_names.into_iter().zip(r.label_values).collect())?,
            time: Nanos(r.time),
            duration: Nanos(r.duration),
            period: r.period,
            links: Links {
                trace_id: unlink(r.trace_id, samples)?,
                span_id: unlink(r.span_id, samples)?,
                profile_id: unlink(r.profile_id, samples)?,
            },
            stacks: r.stacks,
            values: r.values,
        });
    }
    let counts = SymbolCounts {
        string_bytes: h.string_bytes as usize,
        locations: h.locations as usize,
        stack_locations: h.stack_locations as usize,
    };
    Ok(Normalized {
        tenant: TenantId::new(h.tenant).map_err(|e| e.to_string())?,
        symbols: PackedSymbols::new(stack_ids, counts, bytes.slice(header_end..)),
        profiles,
        input_bytes: h.input_bytes as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::Buffer;
    use crate::ids::SeqNo;
    use crate::normalize::{NormalizeLimits, normalize};
    use crate::symbols::SymbolSource;
    use crate::testing::{ProfileBuilder, pprof_write};

    /// A CPU profile with shared and own frames, pprof labels and a trace link.
    fn write(i: i64) -> crate::normalize::WriteRequest {
        let mut b = ProfileBuilder::cpu().time(Nanos(1_000 + i));
        b.sample(&["main", "work", "hash"], &[2, 20], &[("trace_id", "t1")]);
        b.sample(&["main", "idle"], &[1 + i, 10], &[("goroutine", "g")]);
        let own = format!("f{i}");
        b.sample(&["main", &own], &[3, 30], &[]);
        pprof_write(
            "t",
            &[("service_name", "api"), ("pod", &format!("p{}", i % 2))],
            b.gzip(),
            Nanos(5),
        )
    }

    #[test]
    fn a_packed_write_applies_as_the_normalised_one() {
        let limits = NormalizeLimits::default();
        let writes: Vec<Normalized> = (0..4)
            .map(|i| normalize(write(i), &limits).expect("normalise"))
            .collect();
        let mut local = Buffer::new(1 << 30, SeqNo(0));
        let mut packed = Buffer::new(1 << 30, SeqNo(0));
        for (i, n) in writes.iter().enumerate() {
            let bytes = encode_normalized(n);
            let decoded = decode_normalized(bytes.into()).expect("decode");
            assert_eq!(decoded.symbols.stack_count(), n.symbols.stacks.len());
            assert_eq!(
                format!("{:?}", decoded.profiles),
                format!("{:?}", n.profiles)
            );
            let seq = SeqNo(i as u64 + 1);
            let a = local.apply(seq, n).expect("apply");
            let b = packed.apply(seq, &decoded).expect("apply packed");
            assert_eq!(a, b);
        }
        // Again: every stack known now, so the packed write's columns are never decoded.
        let again = decode_normalized(encode_normalized(&writes[0]).into()).expect("decode");
        assert_eq!(
            local.apply(SeqNo(9), &writes[0]).expect("apply"),
            packed.apply(SeqNo(9), &again).expect("apply packed")
        );
        let (a, b) = (local.snapshot(), packed.snapshot());
        let (sa, sb) = (
            a.symbols.read().expect("lock"),
            b.symbols.read().expect("lock"),
        );
        assert_eq!(sa.strings(), sb.strings());
        assert_eq!(sa.functions(), sb.functions());
        assert_eq!(sa.locations(), sb.locations());
        assert_eq!(sa.stacks(), sb.stacks());
        assert_eq!(encode_normalized(&writes[0]), encode_normalized(&writes[0]));
    }

    #[test]
    fn damaged_records_are_errors() {
        let n = normalize(write(0), &NormalizeLimits::default()).expect("normalise");
        let bytes = encode_normalized(&n);
        let decode_all = |b: &[u8]| {
            decode_normalized(bytes::Bytes::copy_from_slice(b))
                .and_then(|n| n.symbols.validate().map(|()| n))
        };
        assert!(decode_all(b"FNRM1\xff\xff").is_err());
        assert!(decode_all(b"nope").is_err());
        for cut in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode_all(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Every single flipped byte either decodes to something consistent or is refused;
        // none panics, and a buffer refuses what does not decode.
        for i in MAGIC.len()..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5a;
            if let Ok(n) = decode_normalized(bad.into()) {
                let mut buffer = Buffer::new(1 << 30, SeqNo(0));
                let _ = buffer.apply(SeqNo(1), &n);
            }
        }
    }
}
