#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS seconds each (default 60) and fails if any crashed.
#
#   tests/fuzz/targets/run.sh [SECONDS]
#
# The toolchain is stable Rust: cargo-fuzz needs nightly-only rustc flags, so this sets
# RUSTC_BOOTSTRAP=1, and builds with `--sanitizer none` (the code is safe Rust, and the
# sanitizer runtimes are not shipped with the stable toolchain). libfuzzer-sys builds libFuzzer
# with the machine's C++ compiler (g++).
#
# Each target starts from its seeds in tests/fuzz/targets/corpus/<target>/ and writes what it finds to a
# scratch corpus, so a run leaves the repository as it was. With PODIUM_FUZZ_KEEP=1 the finds
# are merged into tests/fuzz/targets/corpus/<target>/ and that corpus is minimised (`cargo fuzz cmin`).
# A crashing input is saved in tests/fuzz/targets/artifacts/<target>/; replay it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none <target> <file>`.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# The harness opens a sled log in TMPDIR once per process; keep those in memory when we can,
# and remove them whatever happens.
base=/tmp
if [ -d /dev/shm ] && [ -w /dev/shm ]; then base=/dev/shm; fi
work="$(mktemp -d "${base}/podium-fuzz.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
export TMPDIR="${work}"

cargo fuzz build --sanitizer none

failed=()
summary=()
for target in $(cargo fuzz list); do
    mkdir -p "corpus/${target}" "${work}/corpus/${target}"
    log="${work}/${target}.log"
    echo "== ${target}: ${seconds} s"
    set +e
    cargo fuzz run --sanitizer none "${target}" "${work}/corpus/${target}" "corpus/${target}" -- \
        -max_total_time="${seconds}" -timeout=60 -rss_limit_mb=4096 -print_final_stats=1 \
        >"${log}" 2>&1
    status=$?
    set -e
    grep -A 3 'panicked at' "${log}" || true
    grep -E '^(Done|stat::)' "${log}" || tail -n 25 "${log}"
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "${log}" | grep -o '[0-9]*$' || echo '?')"
    cov="$(grep -o 'cov: [0-9]*' "${log}" | tail -n 1 | grep -o '[0-9]*$' || echo '?')"
    if [ "${status}" -ne 0 ]; then
        failed+=("${target}")
        summary+=("${target}: CRASHED after ${runs} executions (exit ${status}); see tests/fuzz/targets/artifacts/${target}/")
        continue
    fi
    summary+=("${target}: ${runs} executions in ${seconds} s, coverage ${cov}, no crash")
    if [ "${PODIUM_FUZZ_KEEP:-0}" = 1 ]; then
        cp -n "${work}/corpus/${target}/"* "corpus/${target}/" 2>/dev/null || true
        cargo fuzz cmin --sanitizer none "${target}" "corpus/${target}" >"${work}/${target}.cmin.log" 2>&1
        echo "   corpus/${target}: $(find "corpus/${target}" -type f | wc -l) inputs after cmin"
    fi
done

echo
echo "== fuzzing summary"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]}"
    exit 1
fi
