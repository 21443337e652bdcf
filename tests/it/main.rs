//! Integration tests: one binary, one module per area (fast to link, shared support code).

mod api;
mod channels;
mod store;
mod support;
