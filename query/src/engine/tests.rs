use super::*;

#[test]
fn past_prefix_is_the_least_string_above_the_prefixed_ones() {
    assert_eq!(past_prefix("c-12").as_deref(), Some("c-13"));
    assert_eq!(past_prefix("a\u{10FFFF}").as_deref(), Some("b"));
    // Past the surrogates, which are no characters.
    assert_eq!(past_prefix("\u{D7FF}").as_deref(), Some("\u{E000}"));
    assert_eq!(past_prefix("\u{10FFFF}"), None);
    for value in ["c-12", "c-12z", "c-12\u{10FFFF}\u{10FFFF}"] {
        assert!(value < "c-13", "{value}");
    }
}
