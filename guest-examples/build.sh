#!/usr/bin/env bash
# Builds the example guests as wasm32-unknown-unknown core modules that carry
# wit-bindgen's embedded component-type metadata (the host turns them into
# components when it loads them), and copies them to dist/<crate-name>.wasm.
# The `conformance` crate is the exception: built for wasm32-wasip2 (its
# `probe` reads WASI through std), already a component, dist/conformance-rust.wasm.
# Then the guests in the other languages (c/, python/, js/ build scripts).
# Idempotent; works from any directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

TARGET=wasm32-unknown-unknown
WASI_TARGET=wasm32-wasip2

for target in "$TARGET" "$WASI_TARGET"; do
    rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done

cargo build --release --locked --target "$TARGET" --target-dir target --workspace --exclude conformance
cargo build --release --locked --target "$WASI_TARGET" --target-dir target -p conformance

# Replaces $2 by $1 if their contents differ, and says which.
publish() {
    local built="$1" out="$2" status
    if cmp -s "$built" "$out"; then
        status="unchanged"
    else
        cp "$built" "$out.tmp"
        mv "$out.tmp" "$out"
        status="updated"
    fi
    printf '%-32s %8d bytes  %s\n' "$out" "$(stat -c %s "$out")" "$status"
}

mkdir -p dist
for manifest in */Cargo.toml; do
    crate="${manifest%/Cargo.toml}"
    [[ "$crate" != conformance ]] || continue
    built="target/$TARGET/release/${crate//-/_}.wasm"
    out="dist/$crate.wasm"
    if [[ ! -f "$built" ]]; then
        echo "error: $built was not built" >&2
        exit 1
    fi
    # The host needs the metadata wit-bindgen embeds (custom section `component-type:...`).
    if ! grep -qaF 'component-type' "$built"; then
        echo "error: $built has no component-type custom section" >&2
        exit 1
    fi
    publish "$built" "$out"
done
publish "target/$WASI_TARGET/release/conformance.wasm" dist/conformance-rust.wasm

# Guests in other languages, beside the Rust ones.
./c/build.sh
./go/build.sh
./python/build.sh
./js/build.sh
