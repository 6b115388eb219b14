//! Inputs the fuzzer found that once crashed a target, kept so that they never do again.
