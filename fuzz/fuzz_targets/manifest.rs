#![no_main]
//! cargo-fuzz target: `cpi::fuzzing::manifest` (see scripts/fuzz.sh).

libfuzzer_sys::fuzz_target!(|data: &[u8]| cpi::fuzzing::manifest(data));
