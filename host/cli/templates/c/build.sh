#!/usr/bin/env bash
# Builds {{name}}.wasm from step.c: `wit-bindgen c` (crates.io wit-bindgen-cli
# 0.63.0) writes the bindings of wit/ (world `step`) into gen/, clang +
# wasi-libc + lld (Debian) compile a WASI preview1 reactor module that weft
# adapts at load. Installs what it lacks, idempotently.
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
    ! wit-bindgen c --help >/dev/null 2>&1; then
    cargo install --locked --no-default-features --features c,go "wit-bindgen-cli@$WIT_BINDGEN_VERSION"
fi

mkdir -p gen
wit-bindgen c wit --world step --out-dir gen >/dev/null
clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Werror -Wl,--strip-all \
    -I gen -o {{name}}.wasm step.c gen/step.c gen/step_component_type.o
echo "built {{name}}.wasm"
