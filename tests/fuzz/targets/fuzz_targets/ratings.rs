//! cargo-fuzz target `ratings`: see `podium_fuzz_harness::ratings` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzz_harness::ratings(data));
