#![no_main]
//! cargo-fuzz target: `cpi::fuzzing::header_mapper` (see scripts/fuzz.sh).

libfuzzer_sys::fuzz_target!(|data: &[u8]| cpi::fuzzing::header_mapper(data));
