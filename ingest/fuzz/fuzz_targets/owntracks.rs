#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| landport_ingest_fuzz::owntracks(data));
