#!/usr/bin/env bash
# Builds the Python guests: each directory here holding an `app.py` becomes
# ../dist/<name>-python.wasm, a component made by componentize-py (pinned,
# from PyPI, installed into a venv under ../target/python-venv) against
# ../../wit, world `step`. The component imports WASI 0.2 (filesystem,
# sockets, clocks, random, cli), which the host links virtualised.
# Installs what it needs, idempotently; works from any directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

COMPONENTIZE_PY_VERSION=0.25.1
venv=../target/python-venv

if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq python3 python3-venv
fi
if [[ "$("$venv/bin/componentize-py" --version 2>/dev/null)" != *" $COMPONENTIZE_PY_VERSION"* ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "componentize-py==$COMPONENTIZE_PY_VERSION"
fi

out=../target/python
mkdir -p "$out" ../dist
for app in */app.py; do
    name="$(dirname "$app")"
    built="$out/$name.wasm"
    dist="../dist/$name-python.wasm"
    # componentize output is not reproducible (the pre-initialised snapshot
    # differs from build to build), and each new content costs the host a
    # fresh compile: rebuild only when the sources, the WIT or the tool change.
    stamp="$(cat "$name"/*.py ../../wit/step.wit | sha256sum | cut -d' ' -f1)-$COMPONENTIZE_PY_VERSION"
    if cmp -s "$built" "$dist" && [[ "$(cat "$out/$name.stamp" 2>/dev/null)" == "$stamp" ]]; then
        printf '%-32s %8d bytes  %s\n' "$dist" "$(stat -c %s "$dist")" "unchanged"
        continue
    fi
    "$venv/bin/componentize-py" -d ../../wit -w step componentize \
        -p "$name" app -o "$built" >/dev/null
    if cmp -s "$built" "$dist"; then
        status="unchanged"
    else
        cp "$built" "$dist.tmp"
        mv "$dist.tmp" "$dist"
        status="updated"
    fi
    printf '%-32s %8d bytes  %s\n' "$dist" "$(stat -c %s "$dist")" "$status"
    echo "$stamp" >"$out/$name.stamp"
done
