//! Wires the rooms together for `kaffediem serve`.
