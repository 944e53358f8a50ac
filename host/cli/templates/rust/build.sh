#!/usr/bin/env bash
# Builds {{name}}.wasm: a wasm32-unknown-unknown core module with the
# component-type metadata wit-bindgen embeds (weft makes it a component when
# it loads it). Installs the rustup target if missing; idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

TARGET=wasm32-unknown-unknown
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"

cargo build --release --target "$TARGET"
cp "${CARGO_TARGET_DIR:-target}/$TARGET/release/{{crate}}.wasm" {{name}}.wasm
echo "built {{name}}.wasm"
