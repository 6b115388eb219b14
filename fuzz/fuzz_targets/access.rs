//! cargo-fuzz target `access`: see `podium_fuzzing::access` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzzing::access(data));
