//! The hyper service: routing, the JSON API, health and metrics, the WebSocket upgrade.
