//! Any bytes given to the pprof decoder either decode to a valid profile that normalises and
//! re-encodes, or give an error; never a panic, and never more memory than the limit.
#![no_main]

use firn_storage::normalize::{NormalizeLimits, Payload, WriteRequest, normalize};
use firn_storage::pprof::{DecodeLimits, decode, encode_gzip};
use firn_storage::{Nanos, TenantId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits {
        max_decompressed_bytes: 1 << 20,
        ..Default::default()
    };
    let Ok(profile) = decode(data, limits) else {
        return;
    };
    // A valid profile survives a round trip and normalises without error or panic.
    let again = decode(
        &encode_gzip(profile.profile()),
        DecodeLimits {
            max_decompressed_bytes: 16 << 20,
            ..Default::default()
        },
    )
    .expect("a re-encoded valid profile decodes");
    assert_eq!(again.profile(), profile.profile());
    let request = WriteRequest {
        tenant: TenantId::anonymous(),
        labels: vec![("service_name".into(), "fuzz".into())],
        payload: Payload::Pprof(data.to_vec().into()),
        received_at: Nanos(0),
    };
    let _ = normalize(
        request,
        &NormalizeLimits {
            decode: limits,
            ..Default::default()
        },
    );
});
