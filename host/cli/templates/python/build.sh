#!/usr/bin/env bash
# Builds {{name}}.wasm from app.py with componentize-py 0.25.1: the one on
# PATH if it is that version, else one installed from PyPI into .venv/.
# Idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VERSION=0.25.1
componentize=componentize-py
if [[ "$(componentize-py --version 2>/dev/null)" != "componentize-py $VERSION"* ]]; then
    if [[ "$(.venv/bin/componentize-py --version 2>/dev/null)" != "componentize-py $VERSION"* ]]; then
        python3 -m venv .venv
        .venv/bin/pip install --quiet --disable-pip-version-check "componentize-py==$VERSION"
    fi
    componentize=.venv/bin/componentize-py
fi
"$componentize" -d wit -w step componentize app -o {{name}}.wasm
echo "built {{name}}.wasm"
