//! glibc's malloc as podiumd wants it. glibc raises its mmap threshold each time a large block
//! (up to 32 MiB) is freed, so that later large blocks come from the heap instead of mappings of
//! their own, and the holes they leave can pin the heap's pages (which blocks do so in podiumd
//! was not traced). podiumd fixes the threshold at 32 KiB, which also stops the raising:
//! measured with the three-day soak (`podium-loadgen soak`, README "Soak"), a fixed threshold
//! holds 42 to 66 MiB less after day 3 and grows about a quarter less over days 2 and 3.
//!
//! glibc reads its tunables only when a program starts (`GLIBC_TUNABLES`), and setting the
//! threshold from inside (`mallopt`) would take `unsafe`, so podiumd starts itself again at
//! once, with the same process id, arguments and standard streams, and the tunable added to the
//! environment. An operator's own threshold (`glibc.malloc.mmap_threshold` in `GLIBC_TUNABLES`,
//! or the older `MALLOC_MMAP_THRESHOLD_`) is kept; `PODIUM_MALLOC_TUNED` set keeps glibc's
//! defaults; other C libraries, and other systems, are left alone. Started through the dynamic
//! loader by hand (`ld-linux-x86-64.so.2 podiumd`), podiumd would start the loader again without
//! it: set `PODIUM_MALLOC_TUNED` then.

use std::ffi::OsString;

/// The tunable podiumd runs with.
pub const MMAP_THRESHOLD: &str = "glibc.malloc.mmap_threshold=32768";

/// Set in the environment of the podiumd started again: it never starts itself a second time,
/// whatever glibc did with the tunable (in secure mode, a binary given file capabilities say,
/// glibc ignores it or removes the variable). Set by an operator, it keeps glibc's defaults.
const STARTED_AGAIN: &str = "PODIUM_MALLOC_TUNED";

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
    if !cfg!(all(target_os = "linux", target_env = "gnu"))
        || std::env::var_os(STARTED_AGAIN).is_some()
        || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
    {
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
            command
                .args(args)
                .env("GLIBC_TUNABLES", wanted)
                .env(STARTED_AGAIN, "1")
                .exec()
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
