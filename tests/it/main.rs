//! The integration-test binary: one binary, one module per area.

#[path = "../support/phoenix_test_app.rs"]
mod phoenix_test_app;

mod phoenix;
mod phoenix_transport;
