#!/usr/bin/env bash
# Builds the example guests as wasm32-unknown-unknown core modules that carry
# wit-bindgen's embedded component-type metadata (the host turns them into
# components when it loads them), and copies them to dist/<crate-name>.wasm.
# Idempotent; works from any directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

TARGET=wasm32-unknown-unknown

rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"

cargo build --release --locked --target "$TARGET" --target-dir target

mkdir -p dist
for manifest in */Cargo.toml; do
    crate="${manifest%/Cargo.toml}"
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
    if cmp -s "$built" "$out"; then
        status="unchanged"
    else
        cp "$built" "$out.tmp"
        mv "$out.tmp" "$out"
        status="updated"
    fi
    printf '%-32s %8d bytes  %s\n' "$out" "$(stat -c %s "$out")" "$status"
done

# Guests in other languages, beside the Rust ones.
./c/build.sh
./go/build.sh
