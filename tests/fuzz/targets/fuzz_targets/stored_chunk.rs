//! cargo-fuzz target `stored_chunk`: see `podium_fuzz_harness::stored_chunk` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzz_harness::stored_chunk(data));
