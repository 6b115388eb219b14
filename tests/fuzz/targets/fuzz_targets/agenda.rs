//! cargo-fuzz target `agenda`: see `podium_fuzz_harness::agenda` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzz_harness::agenda(data));
