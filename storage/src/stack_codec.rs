//! How a block's `stack` column stores a sample's stack ordinal.
//!
//! A block's rows are sorted so that a profile's samples come in rising ordinal order. With
//! [`StackEncoding::Gaps`] the column stores, for most samples, the step from the previous
//! sample's ordinal (small, and zero-heavy for the popular stacks); a profile's first sample,
//! and every [`RESTART_ROWS`]-th row of a row group, store the ordinal itself as `-(ordinal+1)`
//! (negative, so a reader needs no other marker). A reader that starts at a row-group-relative
//! row that is a multiple of [`RESTART_ROWS`] can therefore decode on its own, and the writer
//! makes every Parquet page of every column start at such a row (`block::encode_block` checks
//! the written page index), so a scan that skips pages through the page index still starts at a
//! restart. Byte stream split and zstd then store the steps in about 0.6 bytes a sample, against
//! 0.9 for the ordinals themselves.

use arrow::array::{Array, Int32Array};
use serde::{Deserialize, Serialize};

/// Rows between forced restarts, relative to a row group's first row. Parquet pages end on a
/// multiple of the writer's mini-batch, which block writing sets to this.
pub const RESTART_ROWS: usize = 1024;

/// How a block stores its stack ordinals (recorded per block in the manifest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StackEncoding {
    /// Each row holds its ordinal (blocks written before gaps, and the fallback when a
    /// written page does not start on a restart).
    #[default]
    Ordinals,
    /// Steps within a profile, restarts as `-(ordinal+1)`; see the module documentation.
    Gaps,
}

/// The stored value of one sample: the step from `previous`, the ordinal of the sample before
/// it in the same profile, or the restart `-(ordinal+1)` when there is none (a profile's start,
/// or a restart row) or the ordinals fall.
pub fn encode_gap(ordinal: i32, previous: Option<i32>) -> i32 {
    match previous {
        Some(p) if ordinal >= p => ordinal - p,
        _ => -ordinal - 1,
    }
}

/// Turns stored stack values back into ordinals, batch by batch, in file order. One decoder
/// reads one contiguous run of rows that starts at a restart (a row group, or the rows a page
/// selection keeps: every kept run starts at a page boundary, hence at a restart).
#[derive(Debug)]
pub struct StackDecoder {
    encoding: StackEncoding,
    previous: Option<i32>,
}

impl StackDecoder {
    pub fn new(encoding: StackEncoding) -> Self {
        Self {
            encoding,
            previous: None,
        }
    }

    /// The ordinals of `stored`; an error (naming the row of the batch) when a step comes
    /// before any restart or overflows, which only a corrupt block holds.
    pub fn decode(&mut self, stored: &Int32Array) -> Result<Int32Array, String> {
        if self.encoding == StackEncoding::Ordinals {
            return Ok(stored.clone());
        }
        if stored.null_count() > 0 {
            return Err("null in the stack column".to_owned());
        }
        let mut out = Vec::with_capacity(stored.len());
        let mut previous = self.previous;
        for (i, &v) in stored.values().iter().enumerate() {
            let ordinal = if v < 0 {
                -(v + 1)
            } else {
                previous
                    .and_then(|p| p.checked_add(v))
                    .ok_or_else(|| format!("stack step {v} at batch row {i} has no base"))?
            };
            out.push(ordinal);
            previous = Some(ordinal);
        }
        self.previous = previous;
        Ok(Int32Array::from(out))
    }
}

#[cfg(test)]
mod tests;
