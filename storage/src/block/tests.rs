use super::*;
use crate::filter::{LabelMatcher, MatchOp};

fn meta() -> TenantBlockMeta {
    TenantBlockMeta {
        row_groups: (0, 1),
        rows: 10,
        min_time: Nanos(100),
        max_time: Nanos(200),
        profile_types: BTreeSet::from(["cpu".to_owned()]),
        deltas: BTreeSet::from([true]),
        periods: BTreeMap::from([("cpu".to_owned(), 10)]),
        labels: BTreeMap::from([
            (
                "pod".to_owned(),
                LabelValues {
                    values: Some(BTreeSet::from(["p1".to_owned()])),
                    rows: 10,
                },
            ),
            (
                "region".to_owned(),
                LabelValues {
                    values: Some(BTreeSet::from(["eu".to_owned()])),
                    rows: 4,
                },
            ),
        ]),
        sums: None,
        sums_slice_nanos: 0,
        type_row_groups: BTreeMap::new(),
        generation: 0,
    }
}

#[test]
fn summed_part_takes_the_slices_whose_rows_lie_in_the_range() {
    let t = |a: i64, b: i64| Nanos(a)..Nanos(b);
    // Rows at 100..=200.
    let mut m = meta();
    assert_eq!(m.summed_part(&t(0, 1000)), None, "no sums");
    m.sums = Some(ByteRange { offset: 0, len: 1 });
    let whole = |slices, a, b| SummedPart {
        slices,
        time: t(a, b),
        whole: true,
    };
    assert_eq!(m.summed_part(&t(100, 201)), Some(whole(0..1, 100, 201)));
    assert_eq!(
        m.summed_part(&t(100, 200)),
        None,
        "unsliced sums of a cut block"
    );

    // Slices 50 wide: [100, 150) and [150, 200) and [200, 250), rows in 100..=200.
    m.sums_slice_nanos = 50;
    assert_eq!(m.summed_part(&t(0, 1000)), Some(whole(0..3, 100, 201)));
    assert_eq!(m.summed_part(&t(100, 201)), Some(whole(0..3, 100, 201)));
    let part = |slices, a, b| SummedPart {
        slices,
        time: t(a, b),
        whole: false,
    };
    assert_eq!(m.summed_part(&t(0, 200)), Some(part(0..2, 100, 200)));
    assert_eq!(m.summed_part(&t(101, 1000)), Some(part(1..3, 150, 201)));
    assert_eq!(m.summed_part(&t(150, 200)), Some(part(1..2, 150, 200)));
    assert_eq!(m.summed_part(&t(120, 199)), None, "no slice inside");
    assert_eq!(m.summed_part(&t(i64::MIN, 160)), Some(part(0..1, 100, 150)));

    // Negative times: the grid is floored, not truncated.
    m.min_time = Nanos(-120);
    m.max_time = Nanos(-1);
    assert_eq!(m.summed_part(&t(-100, 0)), Some(part(1..3, -100, 0)));
}

fn with(f: impl FnOnce(&mut ScanFilter)) -> ScanFilter {
    let mut filter = ScanFilter::default();
    f(&mut filter);
    filter
}

fn label(name: &str, op: MatchOp, value: &str) -> LabelMatcher {
    LabelMatcher::new(name, op, value).expect("valid matcher")
}

#[test]
fn all_match_needs_proof_for_every_part_of_the_filter() {
    let m = meta();
    assert!(m.all_match(&ScanFilter::default()));
    assert!(m.all_match(&with(|f| f.time = Nanos(100)..Nanos(201))));
    assert!(
        !m.all_match(&with(|f| f.time = Nanos(100)..Nanos(200))),
        "the row at 200 is outside a range ending at 200"
    );
    assert!(!m.all_match(&with(|f| f.time = Nanos(101)..Nanos(300))));
    assert!(m.all_match(&with(
        |f| f.profile_types = Some(BTreeSet::from(["cpu".into()]))
    )));
    assert!(!m.all_match(&with(|f| f.profile_types = Some(BTreeSet::new()))));
    assert!(m.all_match(&with(|f| f.delta = Some(true))));
    assert!(!m.all_match(&with(|f| f.delta = Some(false))));
    assert!(m.all_match(&with(|f| f.labels = vec![label("pod", MatchOp::Eq, "p1")])));
    assert!(!m.all_match(&with(|f| f.labels = vec![label("pod", MatchOp::Eq, "p2")])));
    assert!(
        !m.all_match(&with(
            |f| f.labels = vec![label("region", MatchOp::Eq, "eu")]
        )),
        "six rows lack the region label"
    );
    assert!(m.all_match(&with(
        |f| f.labels = vec![label("region", MatchOp::NotEq, "us")]
    )));
    assert!(m.all_match(&with(
        |f| f.labels = vec![label("zone", MatchOp::NotEq, "a")]
    )));
    assert!(!m.all_match(&with(|f| f.labels = vec![label("zone", MatchOp::Eq, "a")])));
    let mut unknown = meta();
    unknown.labels.get_mut("pod").expect("pod").values = None;
    assert!(!unknown.all_match(&with(|f| f.labels = vec![label("pod", MatchOp::Eq, "p1")])));
    unknown.deltas.clear();
    assert!(
        !unknown.all_match(&with(|f| f.delta = Some(true))),
        "older blocks without recorded deltas prove nothing"
    );
}
