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
    }
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
