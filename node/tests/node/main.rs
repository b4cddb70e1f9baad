//! Tests against real `firn serve` processes.

mod cli;
mod clients;
mod crash;
mod go;
mod harness;
mod ingest;
mod outage;
mod push;
mod s3;
