#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kaffediem_fuzz::frame_binary(data));
