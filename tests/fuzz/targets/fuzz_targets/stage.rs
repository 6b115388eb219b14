//! cargo-fuzz target `stage`: see `podium_fuzz_harness::stage` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzz_harness::stage(data));
