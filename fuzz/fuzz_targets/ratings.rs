//! cargo-fuzz target `ratings`: see `podium_fuzzing::ratings` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzzing::ratings(data));
