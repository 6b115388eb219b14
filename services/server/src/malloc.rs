//! glibc's malloc as podiumd wants it. glibc raises its mmap threshold each time a large block
//! (up to 32 MiB) is freed, so that later large blocks come from the heap instead of their own
//! mappings; over a long run, sled's page cache and buffers then scatter freed holes through
//! the heap that pin its pages, and the resident memory grows. podiumd fixes the threshold at
//! 32 KiB, which also stops the raising: measured with the three-day soak (`podium-loadgen
//! soak`, README "Soak"), a fixed threshold holds 45 to 60 MiB less after day 3 and grows a
//! quarter less between days 1 and 3.
//!
//! glibc reads its tunables only when a program starts (`GLIBC_TUNABLES`), and setting the
//! threshold from inside (`mallopt`) would take `unsafe`, so podiumd starts itself again at
//! once, with the same process id, arguments and file descriptors, and the tunable added to the
//! environment. A `GLIBC_TUNABLES` that already sets `glibc.malloc.mmap_threshold` is kept as
//! it is; other C libraries, and other systems, are left alone.

use std::ffi::OsString;

/// The tunable podiumd runs with.
pub const MMAP_THRESHOLD: &str = "glibc.malloc.mmap_threshold=32768";

/// What `GLIBC_TUNABLES` must hold for podiumd, given what it holds now (`None`: unset), or
/// `None` when it already fixes the mmap threshold (podiumd's own, or an operator's choice).
pub fn tunables(current: Option<&str>) -> Option<String> {
    let current = current.unwrap_or_default().trim_matches(':');
    let fixed = current
        .split(':')
        .any(|t| t.starts_with("glibc.malloc.mmap_threshold="));
    match (fixed, current.is_empty()) {
        (true, _) => None,
        (false, true) => Some(MMAP_THRESHOLD.to_owned()),
        (false, false) => Some(format!("{current}:{MMAP_THRESHOLD}")),
    }
}

/// Starts podiumd again with [`MMAP_THRESHOLD`] when it runs on glibc without it; returns only
/// when nothing is to be done, or when starting again failed (said on standard error: podiumd
/// then runs with glibc's defaults). Call it first thing, before any thread is started.
pub fn settle() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let current = std::env::var_os("GLIBC_TUNABLES").map(OsString::into_string);
    let wanted = match current {
        None => tunables(None),
        Some(Ok(current)) => tunables(Some(&current)),
        // Not text: not podiumd's to rewrite.
        Some(Err(_)) => None,
    };
    let Some(wanted) = wanted else {
        return;
    };
    let error = match std::env::current_exe() {
        Ok(exe) => {
            use std::os::unix::process::CommandExt;
            let mut args = std::env::args_os();
            let mut command = std::process::Command::new(exe);
            if let Some(name) = args.next() {
                command.arg0(name);
            }
            command.args(args).env("GLIBC_TUNABLES", wanted).exec()
        }
        Err(error) => error,
    };
    eprintln!(
        "podiumd: running with glibc's default malloc settings: cannot start again with \
         {MMAP_THRESHOLD}: {error}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_added_to_what_is_there_unless_it_is_already_fixed() {
        assert_eq!(tunables(None).as_deref(), Some(MMAP_THRESHOLD));
        assert_eq!(tunables(Some("")).as_deref(), Some(MMAP_THRESHOLD));
        assert_eq!(
            tunables(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=32768")
        );
        // Started again, podiumd finds its own: nothing more to do.
        assert_eq!(tunables(Some(MMAP_THRESHOLD)), None);
        // An operator's own threshold is theirs.
        assert_eq!(
            tunables(Some(
                "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=131072"
            )),
            None
        );
    }
}
