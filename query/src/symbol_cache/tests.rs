use super::*;

fn id(n: u64) -> BlockId {
    BlockId::from_raw(format!("00000-{n:020}-{n:020}")).expect("valid id")
}

#[test]
fn the_least_recently_used_entry_goes_first() {
    let lru = Lru::new(2, usize::MAX);
    lru.insert(&id(1), 1, 0);
    lru.insert(&id(2), 2, 0);
    assert_eq!(lru.get(&id(1)), Some(1), "a hit makes 1 the most recent");
    lru.insert(&id(3), 3, 0);
    assert_eq!(lru.get(&id(2)), None, "2 was the least recently used");
    assert_eq!(lru.get(&id(1)), Some(1));
    assert_eq!(lru.get(&id(3)), Some(3));
}

#[test]
fn bytes_bound_the_cache_too() {
    let lru = Lru::new(usize::MAX, 10);
    lru.insert(&id(1), 1, 6);
    lru.insert(&id(2), 2, 6);
    assert_eq!(lru.get(&id(1)), None, "12 bytes do not fit in 10");
    assert_eq!(lru.get(&id(2)), Some(2));
    lru.insert(&id(3), 3, 11);
    assert_eq!(
        lru.get(&id(3)),
        None,
        "an entry larger than the bound is not kept"
    );
    assert_eq!(lru.get(&id(2)), None);
}
