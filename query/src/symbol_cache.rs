//! Bounded caches of what queries read from block symbol tables. A scan needs only a block's
//! stack ids (16 bytes a stack, to turn the block's stack ordinals into ids); resolving an
//! answer needs the frames of a few blocks' stacks. So the ids of every block a query touches
//! are kept on their own, small enough that a week of blocks fits, and whole tables are kept
//! for the blocks answers were resolved from. A third keeps tenants' stack sums of blocks
//! (`firn_storage::sums`), which merges over whole blocks read instead of rows. All evict the
//! least recently used entry.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, BinaryArray};
use datafusion::arrow::buffer::{Buffer, OffsetBuffer};
use firn_storage::block::ByteRange;
use firn_storage::sums::TenantSums;
use firn_storage::symbols::SymbolTable;
use firn_storage::{BlockId, Store, TenantId};

use crate::error::{Error, Result};

/// Least recently used first; at most `max_entries` values and `max_bytes` bytes.
#[derive(Debug)]
struct Lru<K, T> {
    max_entries: usize,
    max_bytes: usize,
    entries: Mutex<VecDeque<(K, T, usize)>>,
}

impl<K: PartialEq + Clone, T: Clone> Lru<K, T> {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            max_entries,
            max_bytes,
            entries: Mutex::new(VecDeque::new()),
        }
    }

    fn get(&self, block: &K) -> Option<T> {
        let mut entries = self.entries.lock().expect("symbol cache lock poisoned");
        let i = entries.iter().position(|(id, _, _)| id == block)?;
        let entry = entries.remove(i).expect("position is in range");
        let value = entry.1.clone();
        entries.push_back(entry);
        Some(value)
    }

    fn insert(&self, block: &K, value: T, bytes: usize) {
        let mut entries = self.entries.lock().expect("symbol cache lock poisoned");
        if entries.iter().any(|(id, _, _)| id == block) {
            return;
        }
        entries.push_back((block.clone(), value, bytes));
        let mut total: usize = entries.iter().map(|e| e.2).sum();
        while entries.len() > self.max_entries || total > self.max_bytes {
            match entries.pop_front() {
                Some(evicted) => total -= evicted.2,
                None => break,
            }
        }
    }
}

/// The 16-byte id of every stack of `table`, indexed by the block's stack ordinal.
fn stack_ids(table: &SymbolTable) -> Result<ArrayRef> {
    let count = table.stack_count();
    let mut ids = Vec::with_capacity(16 * count);
    for stack in table.stacks() {
        ids.extend_from_slice(&stack.id.to_bytes());
    }
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(16, count));
    let ids = BinaryArray::try_new(offsets, Buffer::from_vec(ids), None)
        .map_err(|e| Error::Execution { source: e.into() })?;
    Ok(Arc::new(ids))
}

/// Block symbol tables and stack ids, read through the store.
#[derive(Debug)]
pub struct SymbolCache {
    store: Arc<Store>,
    tables: Lru<BlockId, Arc<SymbolTable>>,
    ids: Lru<BlockId, ArrayRef>,
    sums: Lru<(BlockId, TenantId), Arc<TenantSums>>,
}

impl SymbolCache {
    /// At most `max_tables` whole tables in `table_bytes`, stack ids in `id_bytes` and stack
    /// sums in `sums_bytes`.
    pub fn new(
        store: Arc<Store>,
        max_tables: usize,
        table_bytes: usize,
        id_bytes: usize,
        sums_bytes: usize,
    ) -> Self {
        Self {
            store,
            tables: Lru::new(max_tables, table_bytes),
            ids: Lru::new(usize::MAX, id_bytes),
            sums: Lru::new(usize::MAX, sums_bytes),
        }
    }

    /// `tenant`'s stack sums in `block`, which its metadata places at `range`.
    pub async fn sums(
        &self,
        block: &BlockId,
        tenant: &TenantId,
        range: ByteRange,
    ) -> Result<Arc<TenantSums>> {
        let key = (block.clone(), tenant.clone());
        if let Some(sums) = self.sums.get(&key) {
            return Ok(sums);
        }
        let sums = Arc::new(self.store.read_sums(block, range).await?);
        self.sums.insert(&key, sums.clone(), sums.memory_bytes());
        Ok(sums)
    }

    /// The symbol table of `block`, from the cache or object storage.
    pub async fn table(&self, block: &BlockId) -> Result<Arc<SymbolTable>> {
        if let Some(table) = self.tables.get(block) {
            return Ok(table);
        }
        let table = Arc::new(self.store.read_symbols(block).await?);
        self.tables
            .insert(block, table.clone(), table.memory_bytes());
        Ok(table)
    }

    /// The stack id of each of `block`'s stack ordinals. A table read for them is not kept:
    /// a scan over many blocks would push out the tables answers are resolved from.
    pub async fn stack_ids(&self, block: &BlockId) -> Result<ArrayRef> {
        if let Some(ids) = self.ids.get(block) {
            return Ok(ids);
        }
        let ids = match self.tables.get(block) {
            Some(table) => stack_ids(&table)?,
            None => stack_ids(&self.store.read_symbols(block).await?)?,
        };
        self.ids
            .insert(block, ids.clone(), ids.get_array_memory_size());
        Ok(ids)
    }
}

#[cfg(test)]
mod tests;
