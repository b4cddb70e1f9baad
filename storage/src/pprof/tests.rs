use std::io::Write;

use proptest::prelude::*;

use super::*;
use crate::testing::ProfileBuilder;

fn sample_profile() -> Profile {
    let mut b = ProfileBuilder::cpu();
    b.sample(
        &["main", "work", "hash"],
        &[3, 30_000_000],
        &[("goroutine", "1")],
    );
    b.sample(&["main", "idle"], &[1, 10_000_000], &[]);
    b.build()
}

#[test]
fn decodes_raw_and_gzipped() {
    let profile = sample_profile();
    let raw = profile.encode_to_vec();
    let gz = encode_gzip(&profile);
    assert_eq!(&gz[..2], &GZIP_MAGIC);
    for input in [&raw, &gz] {
        let decoded = decode(input, DecodeLimits::default()).expect("valid");
        assert_eq!(decoded.profile(), &profile);
    }
}

#[test]
fn truncated_gzip_is_an_error() {
    let gz = encode_gzip(&sample_profile());
    let err = decode(&gz[..gz.len() / 2], DecodeLimits::default()).expect_err("truncated");
    assert!(matches!(err, Error::Decompress { .. }), "{err}");
    assert!(err.to_string().contains("gzip"));
}

#[test]
fn gzip_bomb_stops_at_the_limit() {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![0u8; 50 << 20]).expect("vec");
    let bomb = encoder.finish().expect("vec");
    assert!(bomb.len() < 200_000);
    let err = decode(
        &bomb,
        DecodeLimits {
            max_decompressed_bytes: 1 << 20,
            ..Default::default()
        },
    )
    .expect_err("bomb");
    assert!(
        err.to_string().contains("the limit is 1048576 bytes"),
        "{err}"
    );
}

#[test]
fn random_bytes_are_an_error() {
    let err =
        decode(&[0xff, 0x12, 0x99, 0x01, 0x02], DecodeLimits::default()).expect_err("garbage");
    assert!(matches!(err, Error::ProfileDecode { .. }), "{err}");
}

#[test]
fn invalid_utf8_string_is_an_error() {
    // field 6 (string_table), length 2, bytes 0xc3 0x28: not UTF-8.
    let bytes = [0x32, 0x00, 0x32, 0x02, 0xc3, 0x28];
    let err = decode(&bytes, DecodeLimits::default()).expect_err("bad utf8");
    assert!(matches!(err, Error::ProfileDecode { .. }), "{err}");
}

#[test]
fn validation_names_the_bad_reference() {
    let mut p = sample_profile();
    p.sample[0].location_id.push(999);
    let err = ValidProfile::new(p).expect_err("bad location");
    assert!(
        err.to_string()
            .contains("sample[0].location_id 999 is not in the location table"),
        "{err}"
    );

    let mut p = sample_profile();
    p.function[0].name = 10_000;
    let err = ValidProfile::new(p).expect_err("bad string");
    assert!(
        err.to_string()
            .contains("function[0].name = 10000 is outside string_table"),
        "{err}"
    );

    let mut p = sample_profile();
    p.sample[1].value.pop();
    let err = ValidProfile::new(p).expect_err("value count");
    assert!(
        err.to_string()
            .contains("sample[1] has 1 values but there are 2 sample types"),
        "{err}"
    );

    let mut p = sample_profile();
    p.string_table[0] = "x".into();
    let err = ValidProfile::new(p).expect_err("string 0");
    assert!(
        err.to_string().contains("string_table[0] must be \"\""),
        "{err}"
    );

    let mut p = sample_profile();
    p.location[0].line[0].function_id = 77;
    assert!(ValidProfile::new(p).is_err());

    let mut p = sample_profile();
    p.location[1].id = p.location[0].id;
    let err = ValidProfile::new(p).expect_err("dup id");
    assert!(err.to_string().contains("used twice"), "{err}");
}

fn arb_profile() -> impl Strategy<Value = Profile> {
    let stacks = prop::collection::vec(
        (
            prop::collection::vec(0usize..12, 1..8),
            prop::collection::vec(-5i64..1_000_000, 2),
            any::<bool>(),
        ),
        0..20,
    );
    (stacks, any::<i64>(), 0i64..1_000_000_000).prop_map(|(samples, time, duration)| {
        let mut b = ProfileBuilder::cpu()
            .time(Nanos(time))
            .duration(Nanos(duration));
        for (frames, values, labelled) in samples {
            let names: Vec<String> = frames.iter().map(|f| format!("fn_{f}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let labels: &[(&str, &str)] = if labelled { &[("thread", "t1")] } else { &[] };
            b.sample(&refs, &values, labels);
        }
        b.build()
    })
}

use crate::ids::Nanos;

proptest! {
    #[test]
    fn pprof_round_trips(profile in arb_profile()) {
        let gz = encode_gzip(&profile);
        let decoded = decode(&gz, DecodeLimits::default()).expect("valid");
        prop_assert_eq!(decoded.profile(), &profile);
        let raw = profile.encode_to_vec();
        prop_assert_eq!(decode(&raw, DecodeLimits::default()).expect("valid").into_profile(), profile);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, DecodeLimits { max_decompressed_bytes: 1 << 16, ..Default::default()
});
    }
}

#[test]
fn entry_count_is_checked_before_decoding() {
    // 100,000 empty samples: 200 bytes each of wire, 72 bytes each decoded; refused unread.
    let empty_samples: Vec<u8> = std::iter::repeat_n([0x12u8, 0x00], 100_000)
        .flatten()
        .collect();
    let limits = DecodeLimits {
        max_entries: 1000,
        ..Default::default()
    };
    let err = decode(&empty_samples, limits).expect_err("too many entries");
    assert!(err.to_string().contains("the limit is 1000"), "{err}");
    assert!(decode(&sample_profile().encode_to_vec(), limits).is_ok());
}
