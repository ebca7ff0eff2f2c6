#!/usr/bin/env bash
# Screenshots a local HTML page (e.g. a `kakusan lab run` report.html) with headless
# Chromium, installing Debian's chromium package first when it is missing.
# Usage: bash tools/screenshot.sh PAGE.html OUT.png [WIDTHxHEIGHT]
set -euo pipefail
page="$(realpath "$1")"
out="$(realpath -m "$2")"
size="${3:-1280x2400}"
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
    browser="$(command -v chromium)"
fi
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size="${size/x/,}" --screenshot="$out" "file://$page" 2>/dev/null
echo "$out"
