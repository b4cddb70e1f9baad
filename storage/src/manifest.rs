//! The manifest: the blocks a store holds and the last write they cover. In the embedded store
//! it is persisted as numbered, create-only JSON objects; a server keeps it in Raft instead.

use serde::{Deserialize, Serialize};

use crate::block::BlockMeta;
use crate::compact::RetiredBlock;
use crate::filter::ScanFilter;
use crate::ids::{BlockId, SeqNo, TenantId};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Incremented on every change.
    pub version: u64,
    /// Every write with a sequence number up to this one is in a block.
    pub flushed_seq: SeqNo,
    pub blocks: Vec<BlockMeta>,
    /// Blocks out of the manifest (compacted away) whose objects are deleted after a delay.
    #[serde(default)]
    pub retired: Vec<RetiredBlock>,
}

impl Manifest {
    /// Records a flushed block; `flushed_seq` advances to its last write.
    pub fn add_block(&mut self, block: BlockMeta) {
        self.flushed_seq = self.flushed_seq.max(block.last_seq);
        self.blocks.push(block);
        self.version += 1;
    }

    pub fn remove_blocks(&mut self, ids: &[BlockId]) {
        self.blocks.retain(|b| !ids.contains(&b.id));
        self.version += 1;
    }

    /// The blocks holding rows of `tenant` that may pass `filter`.
    pub fn candidate_blocks<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a ScanFilter,
    ) -> impl Iterator<Item = &'a BlockMeta> + 'a {
        self.blocks
            .iter()
            .filter(move |b| b.tenants.get(tenant).is_some_and(|t| t.may_match(filter)))
    }
}
