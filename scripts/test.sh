#!/usr/bin/env bash
# THE command that runs every test of Kaffediem: the Rust tests (unit, integration, examples,
# benches' builds), then the JavaScript conformance suite that drives the official `phoenix`
# client against the generic test server and the real daemon.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "==> cargo test --all-targets"
cargo test --all-targets

# The JS suite starts target/debug/kaffediem and target/debug/examples/phoenix_test_server.
# `cargo test` builds the examples but not always the plain binary; `cargo build --all-targets`
# resolves features exactly as `cargo test --all-targets` did, so it reuses that build and only
# links what is missing.
echo "==> cargo build --all-targets"
cargo build --all-targets

# The Debian package (scripts/package-test.sh): its contents wherever cargo-deb is installed;
# the install → upgrade → remove → purge cycle with dpkg on a throwaway machine only (root, no
# systemd as PID 1, no Kaffediem installed: CI), or where KAFFEDIEM_PACKAGE_CYCLE=1 allows it.
# CI sets KAFFEDIEM_REQUIRE_PACKAGE_TEST, and there it never skips.
package_mode=""
if command -v cargo-deb >/dev/null && command -v dpkg-deb >/dev/null; then
  package_mode=contents
  if [ "$(id -u)" = 0 ] && command -v dpkg >/dev/null &&
    { [ -n "${KAFFEDIEM_REQUIRE_PACKAGE_TEST:-}" ] || [ -n "${KAFFEDIEM_PACKAGE_CYCLE:-}" ] ||
      { [ ! -d /run/systemd/system ] && [ ! -e /etc/kaffediem ] && [ ! -e /var/lib/kaffediem ] &&
        ! dpkg-query -W kaffediem >/dev/null 2>&1; }; }; then
    package_mode=cycle
  fi
fi
if [ -n "${KAFFEDIEM_REQUIRE_PACKAGE_TEST:-}" ] && [ "$package_mode" != cycle ]; then
  echo "the package cycle is required here: root, dpkg and cargo-deb (cargo install cargo-deb --version 3.8.0 --locked)" >&2
  exit 1
fi
if [ -n "$package_mode" ]; then
  echo "==> Debian package ($package_mode)"
  # one at a time on a machine: the cycle installs into /etc and /var/lib
  flock /tmp/kaffediem-package-test.lock bash scripts/package-test.sh "$package_mode"
else
  echo "==> Debian package: SKIPPED (cargo-deb or dpkg-deb not installed)"
fi

echo "==> JavaScript conformance suite (tests/js)"
cd "$root/tests/js"
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi
# a global bound on the whole suite (each test also has its own timeout in package.json)
timeout --signal=TERM --kill-after=30 900 npm test
