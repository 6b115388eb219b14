//! cargo-fuzz target `recordings`: see `podium_fuzzing::recordings` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzzing::recordings(data));
