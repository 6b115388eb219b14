//! cargo-fuzz target `stored_event`: see `podium_fuzz_harness::stored_event` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzz_harness::stored_event(data));
