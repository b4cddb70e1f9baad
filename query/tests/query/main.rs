//! Integration tests of the query engine over a real store (in-memory and local-filesystem
//! object stores), and against Go's own `go tool pprof` as the merge oracle.

mod fixtures;
mod go_oracle;
mod labels;
mod pages;
mod queries;
mod sums;
