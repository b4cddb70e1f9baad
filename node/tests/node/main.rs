//! Tests against real `firn serve` processes.

mod crash;
mod harness;
mod ingest;
