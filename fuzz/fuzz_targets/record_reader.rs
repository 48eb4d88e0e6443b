#![no_main]
//! cargo-fuzz target: `cpi::fuzzing::record_reader` (see scripts/fuzz.sh).

libfuzzer_sys::fuzz_target!(|data: &[u8]| cpi::fuzzing::record_reader(data));
