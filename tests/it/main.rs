//! Integration tests: one binary, one module per area (fast to link, shared support code).

mod auth;
mod channels;
mod support;
