//! The load generator's scenarios against a real podiumd, with a handful of iterations: each
//! runs and reports what it should. No test asserts a time; the figures are the benchmarks'.

mod backup;
mod failover;
mod fanout;
mod soak;
mod votes;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// Builds `podiumd` with the same cargo and profile as this test, so that the scenarios never
/// run a stale binary, and returns its path.
pub fn podiumd() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// A podiumd of this build on loopback, with a data directory of its own.
pub async fn local_podiumd() -> podium_loadgen::podiumd::LocalPodiumd {
    let binary = tokio::task::spawn_blocking(podiumd).await.unwrap().unwrap();
    podium_loadgen::podiumd::LocalPodiumd::start(&binary)
        .await
        .unwrap()
}

fn build() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/loadgen-<hash>
    let profile_dir = exe.parent().and_then(Path::parent);
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(["build", "--quiet", "-p", "podium-server", "--bins"]);
    if profile_dir.is_some_and(|d| d.ends_with("release")) {
        command.arg("--release");
    }
    let status = command.status()?;
    anyhow::ensure!(status.success(), "cargo build of podiumd failed: {status}");
    podium_loadgen::podiumd::beside_current_exe()
}
