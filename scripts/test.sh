#!/usr/bin/env bash
# THE command that runs every test of Kaffediem: the Rust tests of the whole workspace (unit,
# integration, examples, the load tool `bench/` and its smoke run against the daemon), then the JavaScript conformance suite that drives the official `phoenix`
# client against the generic test server and the real daemon.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "==> cargo test --workspace --all-targets"
cargo test --workspace --all-targets

# The JS suite starts target/debug/kaffediem and target/debug/examples/phoenix_test_server.
# `cargo test` builds the examples but not always the plain binary; `cargo build --workspace
# --all-targets` resolves features exactly as `cargo test --workspace --all-targets` did, so it
# reuses that build and only links what is missing.
echo "==> cargo build --workspace --all-targets"
cargo build --workspace --all-targets

# The README's first command, run as written from a fresh clone (issue 11).
bash "$root/scripts/readme-first-command.sh"

echo "==> JavaScript conformance suite (tests/js)"
cd "$root/tests/js"
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi
# a global bound on the whole suite (each test also has its own timeout in package.json)
timeout --signal=TERM --kill-after=30 900 npm test
