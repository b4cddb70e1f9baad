use proptest::prelude::*;

use super::*;
use crate::normalize::parse_folded;

fn table_of(text: &str) -> (SymbolTable, Vec<SymbolRef>) {
    let (local, stacks, _) = parse_folded(text.as_bytes()).expect("valid");
    let mut table = SymbolTable::new();
    let refs = table.intern(&local);
    (table, stacks.iter().map(|&s| refs[s as usize]).collect())
}

#[test]
fn interning_deduplicates_across_writes() {
    let (local_a, _, _) = parse_folded(b"main;work 1\nmain;idle 1\n").expect("valid");
    let (local_b, _, _) = parse_folded(b"main;work 5\nmain;other 1\n").expect("valid");
    let mut table = SymbolTable::new();
    let a = table.intern(&local_a);
    let b = table.intern(&local_b);
    assert_eq!(a[0], b[0], "same stack, same reference");
    assert_eq!(table.stack_count(), 3);
    assert_eq!(table.functions().len(), 4); // main, work, idle, other
    let names: Vec<&str> = table.frame_names(b[1]).collect();
    assert_eq!(names, ["other", "main"]);
}

#[test]
fn copying_keeps_ids_and_frames() {
    let (source, refs) = table_of("a;b;c 1\na;b 2\n");
    let mut target = SymbolTable::new();
    let copied = target.copy_stack_from(&source, refs[1]);
    assert_eq!(target.stack(copied).id, source.stack(refs[1]).id);
    assert_eq!(
        target.frame_names(copied).collect::<Vec<_>>(),
        source.frame_names(refs[1]).collect::<Vec<_>>()
    );
    assert_eq!(target.copy_stack_from(&source, refs[1]), copied);
}

#[test]
fn corrupt_symbol_files_are_errors() {
    let (table, _) = table_of("a;b 1\n");
    let bytes = encode_symbols(&table);
    assert!(decode_symbols(&bytes[..bytes.len() - 3], 1 << 20).is_err());
    assert!(decode_symbols(b"nope", 1 << 20).is_err());
}

proptest! {
    #[test]
    fn symbol_files_round_trip(
        lines in prop::collection::vec((prop::collection::vec("[a-e]{1,3}", 1..6), 1i64..100), 1..30)
    ) {
        let text: String = lines.iter().map(|(f, v)| format!("{} {v}\n", f.join(";"))).collect();
        let (table, refs) = table_of(&text);
        let bytes = encode_symbols(&table);
        prop_assert_eq!(&encode_symbols(&table), &bytes, "deterministic");
        let decoded = decode_symbols(&bytes, 1 << 24).expect("round trip");
        for &r in &refs {
            let id = table.stack(r).id;
            let d = decoded.stack_ref(id).expect("stack present");
            prop_assert_eq!(decoded.frame_names(d).collect::<Vec<_>>(), table.frame_names(r).collect::<Vec<_>>());
        }
        prop_assert_eq!(decoded.strings(), table.strings());
        // A query's answer form reads back the same, and asks for its size within the bound.
        let answer = encode_symbols_for_answer(&table);
        let read = decode_symbols(&answer, 1 << 24).expect("answer round trip");
        for &r in &refs {
            let d = read.stack_ref(table.stack(r).id).expect("stack present");
            prop_assert_eq!(read.frame_names(d).collect::<Vec<_>>(), table.frame_names(r).collect::<Vec<_>>());
        }
        prop_assert!(decode_symbols(&answer, answer.len() - 6).is_err());
    }
}

#[test]
fn stack_ids_are_recomputed_but_one_that_is_not_its_fingerprint_is_kept() {
    let (table, refs) = table_of("a;b 1\nc;b 2\n");
    let bytes = encode_symbols(&table);
    assert!(bytes.starts_with(b"FSYM2"), "ids left out");
    let decoded = decode_symbols(&bytes, 1 << 20).expect("decode");
    for &r in &refs {
        assert_eq!(decoded.stack(r).id, table.stack(r).id, "recomputed id");
    }

    // A table whose stack id is not its fingerprint keeps that one id.
    let (mut odd, _) = table_of("a;b 1\nc;b 2\n");
    let old = odd.stacks[0].id;
    odd.stacks[0].id = StackId(7);
    odd.stack_refs.remove(&old);
    odd.stack_refs.insert(StackId(7), 0);
    let bytes = encode_symbols(&odd);
    assert!(bytes.starts_with(b"FSYM2"));
    assert!(
        bytes.len() < encode_symbols(&table).len() + 40,
        "one id stored, not all"
    );
    let decoded = decode_symbols(&bytes, 1 << 20).expect("decode");
    assert_eq!(decoded.stack(0).id, StackId(7));
    assert_eq!(decoded.stack(1).id, table.stack(1).id);
}

#[tokio::test]
async fn a_pprofs_stack_ids_are_all_recomputed() {
    use crate::ids::{Nanos, SeqNo};
    use crate::testing::{ProfileBuilder, memory_store, pprof_write};
    let store = memory_store(crate::StoreConfig::default()).await;
    let mut p = ProfileBuilder::cpu().time(Nanos(1_000));
    p.sample(&["main", "serve", "parse"], &[3, 30], &[]);
    p.sample(&["main", "idle"], &[1, 10], &[]);
    let write = pprof_write("t", &[("service_name", "svc")], p.gzip(), Nanos(0));
    store.write(SeqNo(1), write).expect("write");
    let block = store.flush().await.expect("flush").expect("a block");
    let table = store.read_symbols(&block.id).await.expect("symbols");
    assert!(table.stack_count() >= 2);
    assert_eq!(codec::explicit_ids(&encode_symbols(&table)), 0);
}
