//! Tests against real `firn serve` processes.

mod cli;
mod clients;
mod compaction;
mod crash;
mod go;
mod grpc;
mod harness;
mod ingest;
mod legacy;
mod limits;
mod otlp;
mod outage;
mod parca;
mod push;
mod querier;
mod query_api;
mod s3;
mod sim;
mod tenancy;
mod tokens;
mod traces;
mod ui;
mod usage;
