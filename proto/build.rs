//! Compiles `podium/v1/*.proto` with protox (pure Rust, no system `protoc`) and generates the
//! prost messages and tonic stubs, plus the encoded descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let dir = root.join("podium/v1");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", dir.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("podium_descriptor.bin"), fds.encode_to_vec())?;

    // Type names let the log record each event's protobuf name (`prost::Name::full_name`).
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // prost's codec with a small first buffer per stream (`src/codec.rs`).
        .codec_path("crate::codec::PodiumCodec")
        // Hand-written in `src/shared.rs` so that a server encodes each results update once.
        .extern_path(
            ".podium.v1.WatchResultsResponse",
            "crate::shared::WatchResultsResponse",
        )
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
