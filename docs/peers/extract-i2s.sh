#!/usr/bin/env bash
# Cuts bitnet.cpp's AVX2 I2_S dot kernels out of a microsoft/BitNet checkout (at 16da220:
# src/ggml-bitnet-mad.cpp, hsum_i32_8 at lines 19-26, ggml_vec_dot_i2_i8_s_1x1 and
# ggml_vec_dot_i2_i8_s_1x4_32W at lines 198-510) into i2s_kernels.h for i2s_harness.cpp.
# Their code stays outside this repository: run it in a scratch directory.
# Usage: docs/peers/extract-i2s.sh BITNET_CHECKOUT > i2s_kernels.h
set -euo pipefail
src="${1:?usage: extract-i2s.sh BITNET_CHECKOUT}/src/ggml-bitnet-mad.cpp"
grep -q '^static inline int hsum_i32_8' <(sed -n 20p "$src") \
  && grep -q '^void ggml_vec_dot_i2_i8_s_1x1(' <(sed -n 198p "$src") \
  && grep -q '^void ggml_vec_dot_i2_i8_s_1x4_32W(' <(sed -n 414p "$src") \
  || { echo "extract-i2s.sh: $src is not the expected revision (16da220): find the lines by hand" >&2; exit 1; }
echo '// Extracted verbatim from microsoft/BitNet src/ggml-bitnet-mad.cpp (the AVX2 I2_S dot kernels)'
printf '#include <immintrin.h>\n#include <stddef.h>\n#include <stdint.h>\n#define QK_I2_S 128\n'
sed -n 19,26p "$src"
sed -n 198,510p "$src"
