//! Integration tests: one binary, one module per area (fast to link, shared support code).

mod channels;
mod ops;
mod store;
mod support;
