//! A seeded, deterministic profiling workload for benchmarks: stacks 20-40 frames deep that
//! share library frames near the root, Zipf-like popularity, CPU profiles as Go's SDK sends
//! them (one `cpu/nanoseconds` sample type, 10 ms period).

use std::collections::BTreeMap;

use crate::ids::Nanos;
use crate::testing::ProfileBuilder;

/// A small deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `stacks` stacks 20-40 deep sharing library frames near the root.
pub fn stack_universe(rng: &mut Rng, stacks: usize) -> Vec<Vec<String>> {
    let roots = [
        "runtime.main",
        "main.main",
        "net/http.(*conn).serve",
        "main.handler",
    ];
    (0..stacks)
        .map(|i| {
            let depth = 20 + (rng.next_u64() % 21) as usize;
            let mut frames: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
            for d in roots.len()..depth {
                // Frames near the root are shared widely, deeper ones less.
                let width = 4 + d * d;
                frames.push(format!(
                    "pkg{}.fn{}",
                    d,
                    (rng.next_u64() as usize + i / 7) % width
                ));
            }
            frames
        })
        .collect()
}

/// A gzipped CPU profile of `samples` distinct stacks picked with cubic (Zipf-like)
/// popularity, taken at `time` (ns) over 10 s.
pub fn cpu_profile(rng: &mut Rng, universe: &[Vec<String>], samples: usize, time: i64) -> Vec<u8> {
    let mut b = ProfileBuilder::new(
        &[("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10_000_000,
    )
    .duration(Nanos(10_000_000_000))
    .time(Nanos(time));
    let mut picked = BTreeMap::new();
    while picked.len() < samples.min(universe.len()) {
        let i = (rng.unit().powi(3) * universe.len() as f64) as usize;
        *picked.entry(i).or_insert(0i64) += 1 + (rng.next_u64() % 3) as i64;
    }
    for (i, n) in picked {
        let frames: Vec<&str> = universe[i].iter().map(String::as_str).collect();
        b.sample(&frames, &[n * 10_000_000], &[]);
    }
    b.gzip()
}
