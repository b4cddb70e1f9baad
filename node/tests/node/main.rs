//! Tests against real `firn serve` processes.

mod clients;
mod crash;
mod go;
mod grpc;
mod harness;
mod ingest;
mod push;
mod querier;
mod query_api;
