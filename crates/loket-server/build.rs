//! Compiles `proto/` with protox (no system `protoc` needed) and keeps the descriptor set
//! for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with env!(): the compiled build script is cached in a target
    // directory that checkouts at other paths share (tests/run keeps it in ~/.cache).
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let gateway = proto_root.join("loket/v1/gateway.proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let fds = protox::compile([&gateway], [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("loket_descriptor.bin"), fds.encode_to_vec())?;

    // Decode errors are INVALID_ARGUMENT (src/proto/codec.rs), not tonic-prost's INTERNAL.
    tonic_prost_build::configure()
        .extern_path(".google.rpc.Status", "::tonic_types::pb::Status")
        .codec_path("crate::proto::codec::GatewayCodec")
        .compile_fds(fds)?;
    Ok(())
}
