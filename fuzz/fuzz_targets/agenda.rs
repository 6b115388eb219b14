//! cargo-fuzz target `agenda`: see `podium_fuzzing::agenda` for what it covers.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podium_fuzzing::agenda(data));
