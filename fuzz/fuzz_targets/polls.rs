//! cargo-fuzz target `polls`: see `podium_fuzzing::polls` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzzing::polls(data));
