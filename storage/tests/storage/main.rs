//! Integration tests of the embedded store: writes, flushes, blocks, manifest, retention.

mod store;
