// A timing harness around bitnet.cpp's I2_S GEMV kernels (AVX2): includes i2s_kernels.h, which
// extract-i2s.sh cuts out of a bitnet.cpp checkout (never committed here). Weights: random
// ternary, stored as q = w + 1 in bitnet.cpp's two I2_S layouts (ACT_PARALLEL: 128-value blocks
// of 32 bytes, 4 values per byte at shifts 6,4,2,0 by group; and the 4-row-interleaved one).
// Activations: random int8. Checks the sums against a scalar loop, then prints min/median TSC
// cycles per MAC at 336x128 and 2048x2048.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <algorithm>
#include <x86intrin.h>
#include "i2s_kernels.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next() { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

int main(int argc, char** argv) {
    int list[][2] = {{336, 128}, {2048, 2048}};
    for (auto& sh : list) {
        int rows = sh[0], cols = sh[1];
        std::vector<uint8_t> q((size_t)rows * cols);
        for (auto& v : q) v = (uint8_t)(next() % 3);   // q = w + 1 in {0, 1, 2}
        std::vector<int8_t> y(cols);
        for (auto& v : y) v = (int8_t)next();
        // ACT_PARALLEL layout: per row, per 128-block i: byte 32i + (j % 32) holds q[j] << (6 - 2*(j/32)).
        std::vector<uint8_t> wa((size_t)rows * cols / 4, 0);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) {
                int blk = j / 128, jj = j % 128;
                wa[(size_t)r * cols / 4 + blk * 32 + jj % 32] |= q[(size_t)r * cols + j] << (6 - 2 * (jj / 32));
            }
        // 4-row layout: byte rg*cols + col = q0<<6 | q1<<4 | q2<<2 | q3.
        std::vector<uint8_t> wb((size_t)rows * cols / 4, 0);
        for (int rg = 0; rg < rows / 4; rg++)
            for (int c = 0; c < cols; c++) {
                uint8_t b = 0;
                for (int k = 0; k < 4; k++) b |= q[(size_t)(4 * rg + k) * cols + c] << (6 - 2 * k);
                wb[(size_t)rg * cols + c] = b;
            }
        std::vector<float> s(rows);
        std::vector<int> want(rows);
        for (int r = 0; r < rows; r++) {
            int a = 0;
            for (int j = 0; j < cols; j++) a += q[(size_t)r * cols + j] * y[j];
            want[r] = a;
        }
        const char* names[] = {"I2_S 1x1 (ACT_PARALLEL, the default GEMV)", "I2_S 1x4_32W (4-row layout)"};
        for (int kind = 0; kind < 2; kind++) {
            auto run = [&]() {
                if (kind == 0) ggml_vec_dot_i2_i8_s_1x1(cols, s.data(), 0, wa.data(), cols, y.data(), 0, rows);
                else ggml_vec_dot_i2_i8_s_1x4_32W(cols, s.data(), 0, wb.data(), cols, y.data(), 0, rows);
            };
            run();
            for (int r = 0; r < rows; r++)
                if ((int)s[r] != want[r]) { printf("MISMATCH %s row %d: %f vs %d\n", names[kind], r, s[r], want[r]); return 1; }
            double macs = (double)rows * cols;
            int calls = std::max(50, (int)((1 << 26) / macs));
            std::vector<uint64_t> t(calls);
            for (int i = 0; i < calls; i++) {
                uint64_t a = __rdtsc(); run(); uint64_t b = __rdtsc(); t[i] = b - a;
            }
            std::sort(t.begin(), t.end());
            printf("%4dx%-4d %-42s TSC cycles/MAC: min %.4f median %.4f\n", rows, cols, names[kind], t[0] / macs, t[calls / 2] / macs);
        }
    }
    return 0;
}
