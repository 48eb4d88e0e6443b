#![no_main]
//! cargo-fuzz target: `cpi::fuzzing::project_config` (see scripts/fuzz.sh).

libfuzzer_sys::fuzz_target!(|data: &[u8]| cpi::fuzzing::project_config(data));
