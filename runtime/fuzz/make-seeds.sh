#!/usr/bin/env bash
# Builds the seed corpora of the fuzz targets under runtime/fuzz/corpus/<target>/ (gitignored;
# $CORPUS overrides the directory):
# small blobs of several configs from examples/make_seeds.rs, plus tiny-preset blobs from the
# runtime's random_blob example. `--mcu` also adds one mcu-preset blob (~340 KB; it raises
# libFuzzer's default -max_len and slows every execution, so it is off by default).
set -euo pipefail
cd "$(dirname "$0")"
FUZZ_DIR=$PWD
ROOT=$(cd ../.. && pwd)
NICE=${NICE:-nice -n 19}
CORPUS=${CORPUS:-$FUZZ_DIR/corpus}

env -u CARGO_TARGET_DIR $NICE cargo run -q --release --example make_seeds -- "$CORPUS"
for seed in 1 2 3; do
    (cd "$ROOT" && $NICE cargo run -q -p runtime --features writer --example random_blob -- \
        "$CORPUS/load_and_generate/tiny-seed$seed.bin" --preset tiny --seed "$seed")
done
t="$CORPUS/encode/tiny-seed1.bin"
{ printf '\x0cROMEO: hello'; cat "$CORPUS/load_and_generate/tiny-seed1.bin"; } > "$t"
if [[ "${1:-}" == "--mcu" ]]; then
    (cd "$ROOT" && $NICE cargo run -q -p runtime --features writer --example random_blob -- \
        "$CORPUS/load_and_generate/mcu-seed1.bin" --preset mcu --seed 1)
fi
du -sh "$CORPUS"/*
