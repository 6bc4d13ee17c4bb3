//! Compiles proto/ with a pure-Rust protobuf compiler (protox), so building Vakt
//! never needs a `protoc` on the machine.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/vakt/v1/authorization.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Server reflection serves this descriptor set, so grpcurl works without the .proto.
    std::fs::write(
        out.join("vakt_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
