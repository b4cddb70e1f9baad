//! Fixtures for tests and benchmarks: a builder of pprof profiles from function-name stacks.

pub mod go;
pub mod workload;

use std::collections::HashMap;

use crate::ids::{Nanos, TenantId};
use crate::normalize::{Payload, WriteRequest};
use crate::pprof::proto::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};

/// Builds pprof profiles whose frames are named functions, one location per function.
#[derive(Debug, Clone)]
pub struct ProfileBuilder {
    profile: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<String, u64>,
}

impl ProfileBuilder {
    /// A profile with the given sample types `(type, unit)` and period type.
    pub fn new(sample_types: &[(&str, &str)], period_type: (&str, &str), period: i64) -> Self {
        let mut b = ProfileBuilder {
            profile: Profile {
                string_table: vec![String::new()],
                period,
                ..Default::default()
            },
            strings: HashMap::from([(String::new(), 0)]),
            functions: HashMap::new(),
        };
        b.profile.sample_type = sample_types
            .iter()
            .map(|(t, u)| ValueType {
                r#type: b.s(t),
                unit: b.s(u),
            })
            .collect();
        b.profile.period_type = Some(ValueType {
            r#type: b.s(period_type.0),
            unit: b.s(period_type.1),
        });
        let (filename, build_id) = (b.s("/bin/app"), b.s("abc123"));
        b.profile.mapping.push(Mapping {
            id: 1,
            memory_start: 0x400000,
            memory_limit: 0x800000,
            filename,
            build_id,
            has_functions: true,
            ..Default::default()
        });
        b
    }

    /// Go's CPU profile shape: `samples/count` and `cpu/nanoseconds` at 100 Hz over 10 s.
    pub fn cpu() -> Self {
        let mut b = Self::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            10_000_000,
        );
        b.profile.duration_nanos = 10_000_000_000;
        b
    }

    pub fn time(mut self, time: Nanos) -> Self {
        self.profile.time_nanos = time.0;
        self
    }

    pub fn duration(mut self, duration: Nanos) -> Self {
        self.profile.duration_nanos = duration.0;
        self
    }

    fn s(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    fn location(&mut self, name: &str) -> u64 {
        if let Some(&id) = self.functions.get(name) {
            return id;
        }
        let id = self.profile.function.len() as u64 + 1;
        let n = self.s(name);
        let file = self.s("main.go");
        self.profile.function.push(Function {
            id,
            name: n,
            system_name: n,
            filename: file,
            start_line: 1,
        });
        self.profile.location.push(Location {
            id,
            mapping_id: 1,
            // The address depends on the name only, so the same function has the same location in
            // every profile built here, whatever order functions were first used in.
            address: 0x400000 + 16 * (xxhash_rust::xxh3::xxh3_64(name.as_bytes()) & 0xffff),
            line: vec![Line {
                function_id: id,
                line: 10,
                column: 0,
            }],
            is_folded: false,
        });
        self.functions.insert(name.to_owned(), id);
        id
    }

    /// Adds a sample; `stack` is root first (as folded text and flame graphs read).
    pub fn sample(&mut self, stack: &[&str], values: &[i64], labels: &[(&str, &str)]) -> &mut Self {
        let location_id = stack.iter().rev().map(|f| self.location(f)).collect();
        let label = labels
            .iter()
            .map(|(k, v)| Label {
                key: self.s(k),
                str: self.s(v),
                num: 0,
                num_unit: 0,
            })
            .collect();
        self.profile.sample.push(Sample {
            location_id,
            value: values.to_vec(),
            label,
        });
        self
    }

    pub fn build(&self) -> Profile {
        self.profile.clone()
    }

    pub fn gzip(&self) -> Vec<u8> {
        crate::pprof::encode_gzip(&self.profile)
    }
}

/// A write of a pprof payload for `service`.
pub fn pprof_write(
    tenant: &str,
    labels: &[(&str, &str)],
    payload: Vec<u8>,
    received_at: Nanos,
) -> WriteRequest {
    WriteRequest {
        tenant: TenantId::new(tenant).expect("test tenant ids are valid"),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        payload: Payload::Pprof(payload.into()),
        received_at,
    }
}

/// A store over a fresh in-memory object store.
pub async fn memory_store(config: crate::StoreConfig) -> crate::Store {
    crate::Store::open(
        std::sync::Arc::new(object_store::memory::InMemory::new()),
        object_store::path::Path::from("s"),
        config,
    )
    .await
    .expect("opening an in-memory store cannot fail")
}
