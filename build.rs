//! Compiles every contract under `proto/` once, in pure Rust (protox, no
//! system `protoc`): Rust code for the messages, servers and clients, and the
//! encoded descriptor set that server reflection serves.

use std::path::{Path, PathBuf};

use prost::Message;

fn proto_files(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            proto_files(&path, found)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            found.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build 0.14 never emits rerun-if-changed itself.
    println!("cargo:rerun-if-changed=proto");
    let mut files = Vec::new();
    proto_files(Path::new("proto"), &mut files)?;
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // The set includes the imports (google/protobuf/*): reflection needs them
    // so grpcurl can resolve every type, and prost maps them to prost-types.
    std::fs::write(
        out_dir.join("azora_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    // `prost::Name` on every message lets the codec find a request's
    // descriptor by its type; the codec refuses what prost or the databases
    // cannot take (src/codec.rs) and encodes as tonic-prost does.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .codec_path("crate::codec::EdgeCodec")
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}
