//! Every object-store key Firn writes is formatted here and nowhere else.

use object_store::path::Path;

use crate::ids::{BlockId, ShardId};

/// The keys of one store, under a prefix (a shard's directory in a server).
#[derive(Clone, Debug)]
pub struct Paths {
    prefix: Path,
}

impl Paths {
    pub fn new(prefix: Path) -> Self {
        Self { prefix }
    }

    /// The keys of one shard of a server's data under `root`: `<root>/shards/<shard>`.
    pub fn for_shard(root: &Path, shard: ShardId) -> Self {
        Self {
            prefix: root.clone().join("shards").join(format!("{:05}", shard.0)),
        }
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    pub fn blocks_dir(&self) -> Path {
        self.prefix.clone().join("blocks")
    }

    /// The Parquet file of a block's sample rows.
    pub fn block_samples(&self, block: &BlockId) -> Path {
        self.blocks_dir()
            .join(block.as_str())
            .join("samples.parquet")
    }

    /// The symbol table of a block.
    pub fn block_symbols(&self, block: &BlockId) -> Path {
        self.blocks_dir().join(block.as_str()).join("symbols.bin")
    }

    pub fn manifests_dir(&self) -> Path {
        self.prefix.clone().join("manifest")
    }

    /// Manifest versions are zero-padded so the newest sorts last.
    pub fn manifest(&self, version: u64) -> Path {
        self.manifests_dir().join(format!("{version:020}.json"))
    }

    /// The version of a manifest key, if it is one.
    pub fn manifest_version(&self, path: &Path) -> Option<u64> {
        path.filename()?.strip_suffix(".json")?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SeqNo;

    #[test]
    fn keys_are_stable() {
        let paths = Paths::new(Path::from("shard-0"));
        let block = BlockId::new(ShardId(0), SeqNo(1), SeqNo(9));
        assert_eq!(
            paths.block_samples(&block).as_ref(),
            "shard-0/blocks/00000-00000000000000000001-00000000000000000009/samples.parquet"
        );
        let m = paths.manifest(42);
        assert_eq!(paths.manifest_version(&m), Some(42));
        let shard = Paths::for_shard(&Path::from("firn"), ShardId(3));
        assert_eq!(shard.prefix().as_ref(), "firn/shards/00003");
    }
}
