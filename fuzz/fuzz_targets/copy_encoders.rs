#![no_main]
//! cargo-fuzz target: `cpi::fuzzing::copy_encoders` (see scripts/fuzz.sh).

libfuzzer_sys::fuzz_target!(|data: &[u8]| cpi::fuzzing::copy_encoders(data));
