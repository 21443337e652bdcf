//! The protocol test channel (`tests/support/phoenix_test_app.rs`) as a standalone server,
//! for the JavaScript suite that drives the official `phoenix` client against it.
//!
//! Usage: `phoenix_test_server PORT [IDLE_TIMEOUT_MS]` (PORT 0 = ephemeral). Prints
//! `listening on 127.0.0.1:PORT` once bound, then serves until killed.

#[path = "../tests/support/phoenix_test_app.rs"]
mod app;

use std::io::Write;
use std::time::Duration;

use kaffediem::phoenix::EndpointConfig;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let port: u16 = match args.next().map(|p| p.parse()) {
        Some(Ok(port)) => port,
        None => 0,
        Some(Err(_)) => {
            eprintln!("usage: phoenix_test_server PORT [IDLE_TIMEOUT_MS]");
            std::process::exit(2);
        }
    };
    let mut config = EndpointConfig::default();
    if let Some(ms) = args.next() {
        match ms.parse() {
            Ok(ms) => config.idle_timeout = Duration::from_millis(ms),
            Err(_) => {
                eprintln!("IDLE_TIMEOUT_MS must be a number of milliseconds");
                std::process::exit(2);
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot bind 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    println!("listening on 127.0.0.1:{addr}");
    let _ = std::io::stdout().flush();
    app::serve(listener, config).await;
}
