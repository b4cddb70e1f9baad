//! A bounded cache of block symbol tables. Queries need a block's table twice: its stack ids to
//! turn the block's stack ordinals into ids while scanning, and its frames to resolve the stacks
//! that survive into an answer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, BinaryArray};
use datafusion::arrow::buffer::{Buffer, OffsetBuffer};
use firn_storage::symbols::SymbolTable;
use firn_storage::{BlockId, Store};

use crate::error::{Error, Result};

/// One block's symbols.
#[derive(Debug)]
pub struct BlockSymbols {
    pub table: SymbolTable,
    /// The 16-byte id of every stack, indexed by the block's stack ordinal.
    pub stack_ids: ArrayRef,
}

impl BlockSymbols {
    fn new(table: SymbolTable) -> Result<Self> {
        let count = table.stack_count();
        let mut ids = Vec::with_capacity(16 * count);
        for ordinal in 0..count {
            ids.extend_from_slice(&table.stack(ordinal as u32).id.to_bytes());
        }
        let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(16, count));
        let stack_ids = BinaryArray::try_new(offsets, Buffer::from_vec(ids), None)
            .map_err(|e| Error::Execution { source: e.into() })?;
        Ok(Self {
            table,
            stack_ids: Arc::new(stack_ids),
        })
    }

    fn bytes(&self) -> usize {
        self.table.memory_bytes() + self.stack_ids.get_array_memory_size()
    }
}

/// At most `max_entries` tables and `max_bytes` bytes; the least recently loaded go first.
#[derive(Debug)]
pub struct SymbolCache {
    store: Arc<Store>,
    max_entries: usize,
    max_bytes: usize,
    entries: Mutex<VecDeque<(BlockId, Arc<BlockSymbols>)>>,
}

impl SymbolCache {
    pub fn new(store: Arc<Store>, max_entries: usize, max_bytes: usize) -> Self {
        Self {
            store,
            max_entries,
            max_bytes,
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// The symbols of `block`, from the cache or object storage.
    pub async fn get(&self, block: &BlockId) -> Result<Arc<BlockSymbols>> {
        if let Some((_, symbols)) = self
            .entries
            .lock()
            .expect("symbol cache lock poisoned")
            .iter()
            .find(|(id, _)| id == block)
        {
            return Ok(symbols.clone());
        }
        let symbols = Arc::new(BlockSymbols::new(self.store.read_symbols(block).await?)?);
        let mut entries = self.entries.lock().expect("symbol cache lock poisoned");
        if !entries.iter().any(|(id, _)| id == block) {
            entries.push_back((block.clone(), symbols.clone()));
        }
        let mut bytes: usize = entries.iter().map(|(_, s)| s.bytes()).sum();
        while entries.len() > self.max_entries || bytes > self.max_bytes {
            match entries.pop_front() {
                Some((_, evicted)) => bytes -= evicted.bytes(),
                None => break,
            }
        }
        Ok(symbols)
    }
}
