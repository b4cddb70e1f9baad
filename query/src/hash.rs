//! A hasher for keys this process made itself: stack ids (already uniform 128-bit hashes, so
//! their low 64 bits serve) and small integers (mixed with one multiply). SipHash's defence
//! against chosen keys is not needed for them and costs most of a hot loop.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u128(&mut self, i: u128) {
        self.0 ^= i as u64;
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
}

pub type BuildIdHasher = BuildHasherDefault<IdHasher>;
