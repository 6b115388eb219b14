//! cargo-fuzz target `questions`: see `podium_fuzz_harness::questions` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzz_harness::questions(data));
