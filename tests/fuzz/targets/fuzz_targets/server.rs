//! cargo-fuzz target `server`: see `podium_fuzz_harness::server` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzz_harness::server(data));
