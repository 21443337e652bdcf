#!/usr/bin/env bash
# Cross-build the Raspberry Pi package (arm64) on a Debian/Ubuntu PC: README "Install on a
# Raspberry Pi". Needs root or sudo for the cross compiler the first time.
#
# Build on a system no newer than the Pi's OS (Debian 12 for Raspberry Pi OS bookworm): the
# package depends on the glibc it was linked against.
#
# Measured on the 2-core CI-like machine: about 250 s of CPU for the release build (every
# dependency compiled for aarch64), plus the toolchain download the first time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu
fi
rustup target add aarch64-unknown-linux-gnu
command -v cargo-deb >/dev/null || cargo install cargo-deb --version 3.8.0 --locked

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
cargo deb --target aarch64-unknown-linux-gnu "$@"
