//! Any bytes given to the folded-stacks parser parse or give an error naming a line.
#![no_main]

use firn_storage::normalize::parse_folded;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_folded(data) {
        Ok((symbols, stacks, values)) => {
            assert_eq!(stacks.len(), values.len());
            assert!(values.iter().all(|&v| v > 0));
            assert!(stacks.iter().all(|&s| (s as usize) < symbols.stacks.len()));
        }
        Err(e) => assert!(e.to_string().starts_with("folded stacks line ")),
    }
});
