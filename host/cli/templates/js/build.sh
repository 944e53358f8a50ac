#!/usr/bin/env bash
# Builds {{name}}.wasm from app.js with componentize-js 0.23.0: the one on
# PATH if it is that version, else one installed from npm into node_modules/.
# `-d http fetch-event` leaves out wasi:http, which weft does not offer.
# Idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VERSION=0.23.0
componentize=componentize-js
if [[ "$(componentize-js --version 2>/dev/null)" != "$VERSION" ]]; then
    componentize=node_modules/.bin/componentize-js
    if [[ "$("$componentize" --version 2>/dev/null)" != "$VERSION" ]]; then
        npm install --no-audit --no-fund --silent
    fi
fi
"$componentize" --wit wit --world-name step -d http fetch-event -o {{name}}.wasm app.js
echo "built {{name}}.wasm"
