//! Tests against real `firn serve` processes.

mod clients;
mod crash;
mod harness;
mod ingest;
mod push;
