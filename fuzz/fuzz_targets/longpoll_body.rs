#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kaffediem_fuzz::longpoll_body(data));
