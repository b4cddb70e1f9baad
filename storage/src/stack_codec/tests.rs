use super::*;

/// Stored values for profiles of the given ordinals (each sorted), rows counted from 0.
fn encode(profiles: &[&[i32]]) -> Vec<i32> {
    let mut out = Vec::new();
    for profile in profiles {
        let mut previous = None;
        for &o in *profile {
            let restart = out.len() % RESTART_ROWS == 0;
            out.push(encode_gap(o, previous.filter(|_| !restart)));
            previous = Some(o);
        }
    }
    out
}

#[test]
fn gaps_round_trip_across_batches_and_restarts() {
    let long: Vec<i32> = (0..3000).map(|i| i / 2).collect();
    let profiles: Vec<&[i32]> = vec![&[0, 0, 3, 7], &[2, 5], &long, &[9]];
    let stored = encode(&profiles);
    let want: Vec<i32> = profiles.concat();
    assert_eq!(stored[0], -1);
    assert_eq!(stored[1], 0);
    assert_eq!(stored[2], 3);
    assert_eq!(stored[4], -3, "a profile starts with its ordinal");
    assert!(stored[RESTART_ROWS] < 0, "row {RESTART_ROWS} is a restart");
    let mut decoder = StackDecoder::new(StackEncoding::Gaps);
    let mut got: Vec<i32> = Vec::new();
    for batch in stored.chunks(700) {
        got.extend(
            decoder
                .decode(&Int32Array::from(batch.to_vec()))
                .expect("decodes")
                .values(),
        );
    }
    assert_eq!(got, want);
    // A reader that starts at a restart needs nothing before it.
    let mut late = StackDecoder::new(StackEncoding::Gaps);
    let tail = late
        .decode(&Int32Array::from(stored[2 * RESTART_ROWS..].to_vec()))
        .expect("decodes");
    assert_eq!(tail.values(), &want[2 * RESTART_ROWS..]);
}

#[test]
fn a_step_without_a_base_or_past_i32_is_an_error() {
    let mut decoder = StackDecoder::new(StackEncoding::Gaps);
    let err = decoder
        .decode(&Int32Array::from(vec![3]))
        .expect_err("a corrupt step");
    assert!(err.contains("no base"), "{err}");
    let mut decoder = StackDecoder::new(StackEncoding::Gaps);
    assert!(
        decoder
            .decode(&Int32Array::from(vec![-2, i32::MAX]))
            .is_err()
    );
    let mut plain = StackDecoder::new(StackEncoding::Ordinals);
    assert_eq!(
        plain
            .decode(&Int32Array::from(vec![3]))
            .expect("decodes")
            .value(0),
        3
    );
}
