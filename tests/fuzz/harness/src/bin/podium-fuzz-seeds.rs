//! Writes the seed inputs of every fuzz target into `<dir>/<target>/` (default `tests/fuzz/targets/corpus`),
//! each file named by the SHA-256 of its content as libFuzzer names its own.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "tests/fuzz/targets/corpus".into()),
    );
    let seeds = podium_fuzz_harness::seeds();
    for (target, data) in &seeds {
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir)?;
        let name = hex::encode(&Sha256::digest(data)[..20]);
        std::fs::write(target_dir.join(name), data)?;
    }
    println!("{} seeds written to {}", seeds.len(), dir.display());
    Ok(())
}
