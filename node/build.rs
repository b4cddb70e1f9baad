//! Generates the node-to-node gRPC service (`proto/cluster.proto`) with a vendored `protoc`,
//! so a build needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/cluster.proto");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        // `bytes` fields (Raft messages, forwarded writes) slice the received buffer instead
        // of copying it.
        .bytes(".")
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &["proto/cluster.proto"], &["proto"])?;
    Ok(())
}
