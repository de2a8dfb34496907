#!/usr/bin/env bash
# Builds the page into a folder any static file server serves:
#   web/build.sh [OUT]                   (OUT: target/web by default)
#   python3 -m http.server -d OUT 8000    then open http://localhost:8000/
# Needs the wasm32-unknown-unknown target (rustup target add wasm32-unknown-unknown); no
# other tool (no wasm-bindgen, no npm).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/target/web}"
cargo="${CARGO:-cargo}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

"$cargo" build --quiet --manifest-path "$root/Cargo.toml" -p web --lib \
  --profile wasm --target wasm32-unknown-unknown
mkdir -p "$out"
cp "$target_dir/wasm32-unknown-unknown/wasm/bitnet_web.wasm" "$out/"
cp "$root/web/www/index.html" "$root/web/www/app.js" "$root/web/www/worker.js" "$out/"
cp "$root/models/shakespeare-mcu.bin" "$out/"
echo "web/build.sh: the page is in $out ($(du -sh "$out" | cut -f1)); serve it with: python3 -m http.server -d $out 8000" >&2
