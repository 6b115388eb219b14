//! cargo-fuzz target `questions`: see `podium_fuzzing::questions` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzzing::questions(data));
