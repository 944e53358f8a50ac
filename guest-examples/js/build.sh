#!/usr/bin/env bash
# Builds the JavaScript guests: each directory here holding an `app.js`
# becomes ../dist/<name>-js.wasm, a component made by componentize-js
# (SpiderMonkey; pinned, from npm, installed under ../target/js-tools)
# against ./wit, world `step-js` (weft's `step` plus
# wasi:cli/environment and wasi:clocks/monotonic-clock, see wit/world.wit). `-d http fetch-event` leaves out the
# wasi:http imports (the host refuses them); stdio, clocks and random stay,
# so console.log, Date.now() and crypto.getRandomValues go through WASI,
# which the host links virtualised. Installs what it needs, idempotently;
# works from any directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

COMPONENTIZE_JS_VERSION=0.23.0
tools=../target/js-tools
cli="$tools/node_modules/.bin/componentize-js"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq nodejs npm
fi
installed="$(node -p "require('./$tools/node_modules/@bytecodealliance/componentize-js/package.json').version" 2>/dev/null || true)"
if [[ "$installed" != "$COMPONENTIZE_JS_VERSION" || ! -x "$cli" ]]; then
    mkdir -p "$tools"
    npm install --prefix "$tools" --no-audit --no-fund --no-save --loglevel=error \
        "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION"
fi

out=../target/js
# The WIT the guests are built against: wit/world.wit (world `step-js`:
# weft's `step` plus wasi:cli/environment and wasi:clocks/monotonic-clock)
# with its dependencies, weft's
# own ../../wit/step.wit among them.
wit="$out/wit"
rm -rf "$wit"
mkdir -p "$wit/deps/weft-step" ../dist
cp wit/world.wit "$wit/"
cp -r wit/deps/. "$wit/deps/"
cp ../../wit/step.wit "$wit/deps/weft-step/"
for app in */app.js; do
    name="$(dirname "$app")"
    built="$out/$name.wasm"
    dist="../dist/$name-js.wasm"
    # componentize output is not reproducible (the pre-initialised snapshot
    # differs from build to build), and each new content costs the host a
    # fresh compile: rebuild only when the sources, the WIT or the tool change.
    stamp="$(cat "$name"/*.js $(find "$wit" -name '*.wit' | sort) | sha256sum | cut -d' ' -f1)-$COMPONENTIZE_JS_VERSION"
    if cmp -s "$built" "$dist" && [[ "$(cat "$out/$name.stamp" 2>/dev/null)" == "$stamp" ]]; then
        printf '%-32s %8d bytes  %s\n' "$dist" "$(stat -c %s "$dist")" "unchanged"
        continue
    fi
    "$cli" --wit "$wit" --world-name step-js -d http fetch-event \
        -o "$built" "$app" >/dev/null
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
