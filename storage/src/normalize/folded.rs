//! Folded stacks: one stack per line, frames root first separated by `;`, then a space and an
//! integer value (`main;work;hash 12`). Produced by py-spy, `perf script | stackcollapse-perf`,
//! async-profiler and many scripts.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::ids::StackId;
use crate::symbols::{self, FunctionView, LocalSymbols, Stack, SymbolRef};

/// Parses folded text into local symbols plus, per stack line, its local stack and value.
/// Lines with value 0 are dropped; identical stacks are summed.
pub fn parse_folded(text: &[u8]) -> Result<(LocalSymbols, Vec<SymbolRef>, Vec<i64>)> {
    let mut symbols = LocalSymbols {
        strings: vec![String::new()],
        ..Default::default()
    };
    let mut function_refs: HashMap<String, SymbolRef> = HashMap::new();
    let mut stack_refs: HashMap<StackId, usize> = HashMap::new();
    let mut stacks = Vec::new();
    let mut values: Vec<i64> = Vec::new();
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let invalid = |reason: String| Error::InvalidFolded {
            line: line_no,
            reason,
        };
        let line = std::str::from_utf8(raw)
            .map_err(|e| invalid(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
        let line = line.trim_end_matches('\r').trim();
        if line.is_empty() {
            continue;
        }
        let (frames, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| invalid("expected `frame;frame;... value`".into()))?;
        let value: i64 = value
            .trim()
            .parse()
            .map_err(|_| invalid(format!("value {value:?} is not an integer")))?;
        if value < 0 {
            return Err(invalid(format!("value {value} is negative")));
        }
        let frames = frames.trim_end();
        if frames.is_empty() {
            return Err(invalid("the stack has no frames".into()));
        }
        if value == 0 {
            continue;
        }
        let mut locations: Vec<SymbolRef> = Vec::new();
        for (j, name) in frames.split(';').enumerate() {
            if name.is_empty() {
                return Err(invalid(format!("frame {} is empty", j + 1)));
            }
            let location = match function_refs.get(name) {
                Some(&l) => l,
                None => {
                    let l = intern_frame(&mut symbols, name);
                    function_refs.insert(name.to_owned(), l);
                    l
                }
            };
            locations.push(location);
        }
        locations.reverse(); // leaf first, as pprof stores stacks
        let id =
            symbols::stack_fingerprint(locations.iter().map(|&l| symbols.locations[l as usize].0));
        match stack_refs.get(&id) {
            Some(&s) => values[s] = values[s].saturating_add(value),
            None => {
                stack_refs.insert(id, stacks.len());
                stacks.push(Stack {
                    id,
                    locations: locations.into(),
                });
                values.push(value);
            }
        }
    }
    let refs = (0..stacks.len() as SymbolRef).collect();
    symbols.stacks = stacks;
    Ok((symbols, refs, values))
}

/// Adds a frame known only by its name: a function and a location without mapping or address.
fn intern_frame(symbols: &mut LocalSymbols, name: &str) -> SymbolRef {
    let s = symbols.strings.len() as SymbolRef;
    symbols.strings.push(name.to_owned());
    let f = symbols.functions.len() as SymbolRef;
    symbols.functions.push(symbols::Function {
        name: s,
        system_name: s,
        filename: 0,
        start_line: 0,
    });
    let key = symbols::location_fingerprint(
        None,
        0,
        std::iter::once((
            FunctionView {
                name,
                system_name: name,
                filename: "",
                start_line: 0,
            },
            0,
        )),
        false,
    );
    let location = symbols::Location {
        mapping: 0,
        address: 0,
        lines: vec![symbols::Line {
            function: f,
            line: 0,
        }]
        .into(),
        is_folded: false,
    };
    symbols.locations.push((key, location));
    (symbols.locations.len() - 1) as SymbolRef
}
