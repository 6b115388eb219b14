//! cargo-fuzz target `access`: see `podium_fuzz_harness::access` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzz_harness::access(data));
