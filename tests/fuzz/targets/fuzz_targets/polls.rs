//! cargo-fuzz target `polls`: see `podium_fuzz_harness::polls` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzz_harness::polls(data));
