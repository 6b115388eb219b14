//! cargo-fuzz target `recordings`: see `podium_fuzz_harness::recordings` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzz_harness::recordings(data));
