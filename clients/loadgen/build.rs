//! Compiles the baseline fan-out service (`proto/baseline.proto`) with protox, so a fresh
//! machine needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let file = root.join("baseline.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Shared, not copied, by every watcher's clone of the update.
        .bytes(".podium.loadgen.v1.Update.payload")
        .compile_fds(fds)?;
    Ok(())
}
