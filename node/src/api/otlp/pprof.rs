//! The pprof one OTLP profile becomes: only the dictionary entries its samples reference,
//! with dense ids, so a request's profiles never each copy its whole dictionary.

use std::collections::HashMap;

use firn_storage::pprof::proto;

use super::convert::{BUILD_ID_KEYS, scalar, string};
use super::messages::ProfilesDictionary;

/// One pprof built from the dictionary entries its samples reference, with dense ids.
pub struct PprofBuilder<'a> {
    d: &'a ProfilesDictionary,
    pub out: proto::Profile,
    /// About the bytes the profile holds so far, against the request's budget.
    pub spent: usize,
    strings: HashMap<String, i64>,
    /// Dictionary index → pprof id.
    locations: HashMap<usize, u64>,
    functions: HashMap<usize, u64>,
    mappings: HashMap<usize, u64>,
}

impl<'a> PprofBuilder<'a> {
    pub fn new(d: &'a ProfilesDictionary) -> Self {
        let mut b = Self {
            d,
            out: proto::Profile::default(),
            spent: 0,
            strings: HashMap::new(),
            locations: HashMap::new(),
            functions: HashMap::new(),
            mappings: HashMap::new(),
        };
        b.string("");
        b
    }

    pub fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        self.spent += s.len() + 24;
        let i = self.out.string_table.len() as i64;
        self.out.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    fn dict_string(&mut self, i: i32) -> i64 {
        let d = self.d;
        self.string(string(d, i))
    }

    /// The pprof id of dictionary location `i` (checked, not 0).
    pub fn location(&mut self, i: usize) -> u64 {
        if let Some(&id) = self.locations.get(&i) {
            return id;
        }
        let l = &self.d.location_table[i];
        let mapping_id = match usize::try_from(l.mapping_index) {
            Ok(m) if m > 0 => self.mapping(m),
            _ => 0,
        };
        let line: Vec<proto::Line> = l
            .lines
            .iter()
            .filter(|line| line.function_index > 0)
            .map(|line| proto::Line {
                function_id: self.function(line.function_index as usize),
                line: line.line,
                column: line.column,
            })
            .collect();
        self.spent += 32 + 24 * line.len();
        let id = self.out.location.len() as u64 + 1;
        self.out.location.push(proto::Location {
            id,
            mapping_id,
            address: l.address,
            line,
            is_folded: false,
        });
        self.locations.insert(i, id);
        id
    }

    fn function(&mut self, i: usize) -> u64 {
        if let Some(&id) = self.functions.get(&i) {
            return id;
        }
        let f = &self.d.function_table[i];
        let function = proto::Function {
            id: self.out.function.len() as u64 + 1,
            name: self.dict_string(f.name_strindex),
            system_name: self.dict_string(f.system_name_strindex),
            filename: self.dict_string(f.filename_strindex),
            start_line: f.start_line,
        };
        self.spent += 48;
        let id = function.id;
        self.out.function.push(function);
        self.functions.insert(i, id);
        id
    }

    fn mapping(&mut self, i: usize) -> u64 {
        if let Some(&id) = self.mappings.get(&i) {
            return id;
        }
        let d = self.d;
        let m = &d.mapping_table[i];
        let build_id = m
            .attribute_indices
            .iter()
            .filter_map(|&a| d.attribute_table.get(usize::try_from(a).ok()?))
            .find(|a| BUILD_ID_KEYS.contains(&string(d, a.key_strindex)))
            .and_then(|a| a.value.as_ref().and_then(|v| scalar(d, v)))
            .unwrap_or_default();
        let mapping = proto::Mapping {
            id: self.out.mapping.len() as u64 + 1,
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: self.dict_string(m.filename_strindex),
            build_id: self.string(&build_id),
            ..Default::default()
        };
        self.spent += 64;
        let id = mapping.id;
        self.out.mapping.push(mapping);
        self.mappings.insert(i, id);
        id
    }

    pub fn finish(self) -> proto::Profile {
        self.out
    }
}
