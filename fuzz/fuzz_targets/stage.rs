//! cargo-fuzz target `stage`: see `podium_fuzzing::stage` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzzing::stage(data));
