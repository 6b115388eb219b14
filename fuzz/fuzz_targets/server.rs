//! cargo-fuzz target `server`: see `podium_fuzzing::server` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzzing::server(data));
