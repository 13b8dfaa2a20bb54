//! Compiles the .proto files with protox (pure Rust, no system `protoc`) and generates the tonic
//! clients and servers: the admin API (plus its encoded descriptor set for gRPC reflection) and
//! the metadata quorum's internal Raft service (no reflection: not a public API).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let admin = ["proto/fjord/admin/v1/admin.proto"];
    let raft = ["proto/fjord/raft/v1/raft.proto"];
    let cluster = ["proto/fjord/cluster/v1/cluster.proto"];
    for p in admin.iter().chain(&raft).chain(&cluster) {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(admin, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("fjord_admin_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    tonic_prost_build::configure().compile_fds(protox::compile(raft, ["proto"])?)?;
    tonic_prost_build::configure().compile_fds(protox::compile(cluster, ["proto"])?)?;
    Ok(())
}
