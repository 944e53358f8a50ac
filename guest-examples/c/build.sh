#!/usr/bin/env bash
# Builds the C guests: each directory here holding a `<name>.c` becomes
# ../dist/c-<name>.wasm, except `conformance`, the conformance guest
# (../CONFORMANCE.md), which becomes ../dist/conformance-c.wasm. clang + wasi-libc + lld from Debian compile it for
# wasm32-wasi (a preview1 *reactor* core module: the host adapts it at load
# with wasmtime's preview1 adapter); `wit-bindgen c` (crates.io
# wit-bindgen-cli, pinned) generates the bindings of ../../wit, world `step`,
# including the component-type metadata the host encodes the component from.
# Installs what it needs, idempotently; works from any directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

WIT_BINDGEN_VERSION=0.63.0
CLANG_RT=/usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a

missing=()
command -v clang >/dev/null || missing+=(clang)
command -v wasm-ld >/dev/null || missing+=(lld)
[[ -f /usr/lib/wasm32-wasi/libc.a ]] || missing+=(wasi-libc)
[[ -f "$CLANG_RT" ]] || missing+=(libclang-rt-14-dev-wasm32)
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
fi
if [[ "$(wit-bindgen --version 2>/dev/null)" != "wit-bindgen-cli $WIT_BINDGEN_VERSION"* ]] ||
    ! wit-bindgen c --help >/dev/null 2>&1 || ! wit-bindgen go --help >/dev/null 2>&1; then
    # Only the C and Go generators (../go/build.sh needs the same binary): a
    # full install builds every language (minutes more).
    cargo install --locked --no-default-features --features c,go "wit-bindgen-cli@$WIT_BINDGEN_VERSION"
fi

out=../target/c
gen="$out/gen"
mkdir -p "$gen" ../dist
wit-bindgen c ../../wit --world step --out-dir "$gen" >/dev/null

for source in */*.c; do
    name="$(basename "$source" .c)"
    built="$out/$name.wasm"
    clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Werror \
        -Wl,--strip-all -I "$gen" -o "$built" \
        "$source" "$gen/step.c" "$gen/step_component_type.o"
    if ! grep -qaF 'component-type' "$built"; then
        echo "error: $built has no component-type custom section" >&2
        exit 1
    fi
    dist="../dist/c-$name.wasm"
    [[ "$name" != conformance ]] || dist=../dist/conformance-c.wasm
    if cmp -s "$built" "$dist"; then
        status="unchanged"
    else
        cp "$built" "$dist.tmp"
        mv "$dist.tmp" "$dist"
        status="updated"
    fi
    printf '%-32s %8d bytes  %s\n' "$dist" "$(stat -c %s "$dist")" "$status"
done
