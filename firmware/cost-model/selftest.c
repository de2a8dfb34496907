/* Self-test of the cost model (rp2350.c): the Thumb decoder, the Cortex-M33 issue rules, the
 * hand-over between blocks and the XIP/QMI model, without QEMU. It includes the plugin's
 * source and stubs QEMU's API:
 *   gcc -O2 -Wall -Wextra -Werror -o rp2350-selftest selftest.c && ./rp2350-selftest
 * Encodings from `llvm-mc -triple=thumbv8m.main -mattr=+dsp -show-encoding` (branch
 * targets written as `#offset`). Each timing case names the rule it checks; the rules and
 * their sources are listed in firmware/COST.md ("Cost model"). */
#include "rp2350.c"

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t a, tb_trans_cb_t b) { (void)a, (void)b; }
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *a) { (void)a; return 0; }
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *a, size_t b) { (void)a, (void)b; return NULL; }
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *a) { (void)a; return 0; }
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *a) { (void)a; return NULL; }
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *a) { (void)a; return 0; }
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *a, vcpu_udata_cb_t b, enum qemu_plugin_cb_flags c, void *d) { (void)a, (void)b, (void)c, (void)d; }
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *a, vcpu_udata_cb_t b, enum qemu_plugin_cb_flags c, void *d) { (void)a, (void)b, (void)c, (void)d; }
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *a, vcpu_mem_cb_t b, enum qemu_plugin_cb_flags c, enum qemu_plugin_mem_rw d, void *e) { (void)a, (void)b, (void)c, (void)d, (void)e; }
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t a, udata_cb_t b, void *c) { (void)a, (void)b, (void)c; }
void qemu_plugin_outs(const char *s) { fputs(s, stdout); }

static int failures, checks;
#define CHECK(cond, ...)                                  \
    do {                                                  \
        checks++;                                         \
        if (!(cond)) {                                    \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);   \
            printf(__VA_ARGS__);                          \
            printf("\n");                                 \
            failures++;                                   \
        }                                                 \
    } while (0)

static struct dec dec_bytes(const uint8_t *b, int size) { return decode_insn(b, (size_t)size); }

/* A block of `len` bytes of Thumb code, decoded and scheduled as tb_trans does. */
static struct tb_info *block_of(const uint8_t *b, int len, uint64_t pc) {
    struct dec ds[64];
    size_t n = 0;
    int it_left = 0;
    for (int i = 0; i < len && n < 64;) {
        int size = (b[i + 1] >> 3) >= 0x1d ? 4 : 2;
        ds[n] = decode_insn(b + i, (size_t)size);
        apply_it(&ds[n], &it_left);
        n++, i += size;
    }
    struct tb_info *t = calloc(1, sizeof *t);
    if (!t) abort();
    schedule_block(t, ds, n, NULL);
    t->n_insns = (uint32_t)n, t->pc = pc, t->fallthrough = pc + (uint64_t)len;
    return t;
}

/* Core cycles of block A then block B on a fresh core; A's final branch taken or not. */
static uint64_t two_blocks(const uint8_t *a, int alen, const uint8_t *b, int blen, int taken) {
    struct core k;
    core_reset(&k);
    struct tb_info *ta = block_of(a, alen, 0x20000000), *tb = block_of(b, blen, 0);
    tb->pc = taken ? 0x20001000 : ta->fallthrough;
    start_block(&k, ta);
    finish_block(&k, tb->pc);
    start_block(&k, tb);
    finish_block(&k, ~0ull);
    free(ta), free(tb);
    return k.core;
}

int main(void) {
    /* Decoder: classes and result kinds. */
    static const struct { uint8_t b[4]; int size; enum cls cls; enum res res; const char *text; } cases[] = {
        {{0x88, 0x42}, 2, ALU, R_ALU, "cmp r0, r1"},
        {{0x00, 0x22}, 2, ALU, R_ALU, "movs r2, #0"},
        {{0x01, 0xeb, 0xc2, 0x00}, 4, ALU, R_CHAIN, "add.w r0, r1, r2, lsl #3"},
        {{0x4f, 0xea, 0x81, 0x00}, 4, ALU, R_ALU, "lsl.w r0, r1, #2"},
        {{0x52, 0xfa, 0x93, 0xf1}, 4, ALU, R_CHAIN, "uxtab r1, r2, r3, ror #8"},
        {{0x2f, 0xfa, 0x92, 0xf1}, 4, ALU, R_CHAIN, "sxtb16 r1, r2, ror #8"},
        {{0x48, 0xb2}, 2, ALU, R_CHAIN, "sxtb r0, r1"},
        {{0x21, 0xfb, 0x02, 0x00}, 4, ALU, R_CHAIN, "smlad r0, r1, r2, r0"},
        {{0x06, 0xfb, 0x00, 0x20}, 4, ALU, R_CHAIN, "mla r0, r6, r0, r2"},
        {{0x81, 0xfb, 0x06, 0x91}, 4, ALU, R_CHAIN, "smull r9, r1, r1, r6"},
        {{0xe1, 0xfb, 0x02, 0x03}, 4, ALU, R_CHAIN, "umlal r0, r3, r1, r2"},
        {{0x82, 0xfa, 0x81, 0xf0}, 4, ALU, R_DSP, "qadd r0, r1, r2"},
        {{0x91, 0xfa, 0x02, 0xf0}, 4, ALU, R_DSP, "sadd16 r0, r1, r2"},
        {{0xc1, 0xea, 0x02, 0x20}, 4, ALU, R_DSP, "pkhbt r0, r1, r2, lsl #8"},
        {{0x01, 0xf3, 0x07, 0x00}, 4, ALU, R_DSP, "ssat r0, #8, r1"},
        {{0xc1, 0xf3, 0xc3, 0x00}, 4, ALU, R_ALU, "ubfx r0, r1, #3, #4"},
        {{0xb1, 0xfa, 0x81, 0xf0}, 4, ALU, R_ALU, "clz r0, r1"},
        {{0x08, 0xba}, 2, ALU, R_ALU, "rev r0, r1"},
        {{0xb3, 0xfb, 0xf2, 0xf3}, 4, DIV, R_ALU, "udiv r3, r3, r2"},
        {{0x91, 0xfb, 0xf2, 0xf0}, 4, DIV, R_ALU, "sdiv r0, r1, r2"},
        {{0x30, 0x8a}, 2, LOAD, R_LOAD, "ldrh r0, [r6, #16]"},
        {{0x12, 0x7a}, 2, LOAD, R_LOAD, "ldrb r2, [r2, #8]"},
        {{0x12, 0x48}, 2, LOAD, R_LOAD, "ldr r0, [pc, #72]"},
        {{0x32, 0xf8, 0x11, 0x10}, 4, LOAD, R_LOAD, "ldrh.w r1, [r2, r1, lsl #1]"},
        {{0x51, 0xf8, 0x22, 0x00}, 4, LOAD, R_LOAD, "ldr.w r0, [r1, r2, lsl #2]"},
        {{0x11, 0xf8, 0x01, 0x0b}, 4, LOAD, R_LOAD, "ldrb r0, [r1], #1"},
        {{0xd0, 0xf8, 0x00, 0xc0}, 4, LOAD, R_LOAD, "ldr.w r12, [r0]"},
        {{0x51, 0xe8, 0x00, 0x0f}, 4, LOAD, R_LOAD, "ldrex r0, [r1]"},
        {{0x02, 0x60}, 2, STORE, R_ALU, "str r2, [r0]"},
        {{0x41, 0xf8, 0x02, 0x00}, 4, STORE, R_ALU, "str.w r0, [r1, r2]"},
        {{0x41, 0xe8, 0x00, 0x02}, 4, STORE, R_ALU, "strex r2, r0, [r1]"},
        {{0xd1, 0xe9, 0x00, 0x01}, 4, LDRD, R_LOAD, "ldrd r0, r1, [r1]"},
        {{0xf2, 0xe8, 0x02, 0x01}, 4, LDRD, R_LOAD, "ldrd r0, r1, [r2], #8"},
        {{0xcd, 0xe9, 0x00, 0x23}, 4, STRD, R_ALU, "strd r2, r3, [sp]"},
        {{0x80, 0xb5}, 2, STM, R_ALU, "push {r7, lr}"},
        {{0x80, 0xbd}, 2, LDM, R_LOAD, "pop {r7, pc}"},
        {{0x08, 0xca}, 2, LDM, R_LOAD, "ldm r2!, {r3}"},
        {{0x04, 0xc0}, 2, STM, R_ALU, "stm r0!, {r2}"},
        {{0xf8, 0xd1}, 2, CBRANCH, R_ALU, "bne"},
        {{0xb2, 0xb1}, 2, CBZ, R_ALU, "cbz r2"},
        {{0x01, 0xf0, 0xbd, 0x81}, 4, CBRANCH, R_ALU, "beq.w"},
        {{0x00, 0xf0, 0x27, 0xb9}, 4, BRANCH, R_ALU, "b.w"},
        {{0x04, 0xf0, 0xca, 0xfc}, 4, BRANCH, R_ALU, "bl"},
        {{0x70, 0x47}, 2, BRANCH, R_ALU, "bx lr"},
        {{0x80, 0x47}, 2, BRANCH, R_ALU, "blx r0"},
        {{0xdf, 0xe8, 0x03, 0xf0}, 4, TABLE, R_ALU, "tbb [pc, r3]"},
        {{0xdf, 0xe8, 0x11, 0xf0}, 4, TABLE, R_ALU, "tbh [pc, r1, lsl #1]"},
        {{0x18, 0xbf}, 2, IT, R_ALU, "it ne"},
        {{0x00, 0xbf}, 2, NOP, R_ALU, "nop"},
        {{0x90, 0xf8, 0x00, 0xf0}, 4, OTHER, R_ALU, "pld [r0]"},
        {{0x90, 0xed, 0x00, 0x0a}, 4, OTHER, R_ALU, "vldr s0, [r0]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dec d = dec_bytes(cases[i].b, cases[i].size);
        CHECK(d.cls == cases[i].cls, "%s: class %d, want %d", cases[i].text, d.cls, cases[i].cls);
        CHECK(d.res == cases[i].res, "%s: result kind %d, want %d", cases[i].text, d.res, cases[i].res);
    }
    /* Registers: the operands that timing depends on. */
    struct dec uxtab = dec_bytes((const uint8_t[]){0x52, 0xfa, 0x93, 0xf1}, 4); /* uxtab r1, r2, r3, ror #8 */
    CHECK(uxtab.acc == 2 && uxtab.acc_kind == K_XTA && uxtab.reads == 1u << 3 && uxtab.n_wr == 1 && uxtab.wr[0] == 1,
          "uxtab: accumulate r2, extracted r3, result r1");
    struct dec smlad = dec_bytes((const uint8_t[]){0x21, 0xfb, 0x02, 0x00}, 4); /* smlad r0, r1, r2, r0 */
    CHECK(smlad.acc == 0 && smlad.acc_kind == K_MAC && smlad.reads == (1u << 1 | 1u << 2), "smlad: accumulate r0");
    struct dec ldrbp = dec_bytes((const uint8_t[]){0x11, 0xf8, 0x01, 0x0b}, 4); /* ldrb r0, [r1], #1 */
    CHECK(ldrbp.wb == 1 && ldrbp.wr[0] == 0 && ldrbp.reads == 1u << 1, "ldrb post-index: writes r0 and r1");
    struct dec popc = dec_bytes((const uint8_t[]){0x80, 0xbd}, 2); /* pop {r7, pc} */
    CHECK(popc.writes_pc && popc.issue == 2 && popc.n_wr == 1 && popc.wr[0] == 7 && popc.wb == 13, "pop {r7, pc}");
    struct dec push = dec_bytes((const uint8_t[]){0xf0, 0xb5}, 2); /* push {r4-r7, lr} */
    CHECK(push.issue == 5 && push.n_sd == 5 && push.sd[4] == 14, "push {r4-r7, lr}: 5 stores, lr last");
    struct dec bne = dec_bytes((const uint8_t[]){0xf8, 0xd1}, 2);
    CHECK(bne.cond && bne.writes_pc && bne.reads == 1u << FLAGS, "bne reads the flags");
    struct dec adds_sh = dec_bytes((const uint8_t[]){0x11, 0xeb, 0x82, 0x00}, 4); /* adds.w r0, r1, r2, lsl #2 */
    CHECK(adds_sh.sets_flags && adds_sh.flags_late, "adds.w with a shifted register: flags late");
    struct dec lsls_w = dec_bytes((const uint8_t[]){0x5f, 0xea, 0x81, 0x00}, 4); /* lsls.w r0, r1, #2 */
    CHECK(lsls_w.sets_flags && !lsls_w.flags_late && lsls_w.res == R_ALU, "lsls.w: a plain shift");
    struct dec movs_rot = dec_bytes((const uint8_t[]){0x5f, 0xf4, 0xfe, 0x50}, 4); /* movs.w r0, #0x1fc0 */
    CHECK(movs_rot.issue == 1 && movs_rot.res == R_ALU, "movs.w with a rotated constant: 1 cycle, one stage");

    /* Issue timing of whole sequences (one block each; `taken` applies to a final branch). */
    static const struct { const char *text; uint8_t b[40]; int len, taken, cycles; const char *rule; } seqs[] = {
        {"ldr r0, [r1]; add r2, r0", {0x08, 0x68, 0x02, 0x44}, 4, 1, 3, "load-to-use latency is 2 cycles"},
        {"ldr r0, [r1]; add r3, r4; add r2, r0", {0x08, 0x68, 0x23, 0x44, 0x02, 0x44}, 6, 1, 3, "an independent instruction fills the load-to-use gap"},
        {"ldr r0, [r1]; str r0, [r2]", {0x08, 0x68, 0x10, 0x60}, 4, 1, 2, "load to store latency is 1 cycle"},
        {"ldr r0, [r1]; smlad r2, r3, r4, r0", {0x08, 0x68, 0x23, 0xfb, 0x04, 0x02}, 6, 1, 2, "a load result is a MAC accumulate a cycle later"},
        {"ldr r0, [r1]; uxtab r2, r0, r3", {0x08, 0x68, 0x50, 0xfa, 0x83, 0xf2}, 6, 1, 3, "*XTA* cannot take a load result as its accumulate a cycle later"},
        {"ldr r0, [r1]; add.w r2, r3, r0, lsl #2", {0x08, 0x68, 0x03, 0xeb, 0x80, 0x02}, 6, 1, 3, "nor can an operand2-shifted instruction"},
        {"ldr r0, [r1]; ldr r2, [r0]", {0x08, 0x68, 0x02, 0x68}, 4, 1, 3, "an address is an ordinary operand (load-to-use 2)"},
        {"ldr r0, [r1]; ldr r2, [r3]; ldr r4, [r5]; ldr r6, [r7]", {0x08, 0x68, 0x1a, 0x68, 0x2c, 0x68, 0x3e, 0x68}, 8, 1, 4, "a load issues in 1 cycle"},
        {"ldr r0, [r1]; uxtb r2, r0; ldrh r3, [r4, r2]", {0x08, 0x68, 0xc2, 0xb2, 0xa3, 0x5a}, 6, 1, 5, "load, extend of its result, use of that: the worst case (2 + 2)"},
        {"ldr r0, [r4], #4; uxtab r1, r8, r0, ror #8; uxtab r2, r8, r0, ror #16; uxtb r3, r0", {0x54, 0xf8, 0x04, 0x0b, 0x58, 0xfa, 0x90, 0xf1, 0x58, 0xfa, 0xa0, 0xf2, 0xc3, 0xb2}, 14, 1, 5, "the LUT row loop's word step: one stall after the word load"},
        {"ldrd r0, r1, [r2]", {0xd2, 0xe9, 0x00, 0x01}, 4, 1, 2, "LDRD executes in 2 cycles"},
        {"ldrd r0, r1, [r2]; add r3, r1", {0xd2, 0xe9, 0x00, 0x01, 0x0b, 0x44}, 6, 1, 4, "LDRD's second register a cycle after the first (assumed)"},
        {"strd r0, r1, [r2]", {0xc2, 0xe9, 0x00, 0x01}, 4, 1, 2, "STRD executes in 2 cycles"},
        {"ldm r0!, {r1, r2, r3, r4}", {0x1e, 0xc8}, 2, 1, 4, "LDM of 4 registers: 4 cycles"},
        {"stm r0!, {r1, r2, r3}", {0x0e, 0xc0}, 2, 1, 3, "STM of 3 registers: 3 cycles"},
        {"push {r4, r5, r6, r7, lr}", {0xf0, 0xb5}, 2, 1, 5, "PUSH of 5 registers: 5 cycles"},
        {"pop {r4, r5, r6, r7, pc}", {0xf0, 0xbd}, 2, 1, 8, "POP of 5 with pc: 5, then load-to-use and a taken branch (derived)"},
        {"uxtb r0, r1; add r2, r0", {0xc8, 0xb2, 0x02, 0x44}, 4, 1, 3, "extends: 2-cycle result latency"},
        {"uxtab r0, r0, r1; uxtab r0, r0, r2", {0x50, 0xfa, 0x81, 0xf0, 0x50, 0xfa, 0x82, 0xf0}, 8, 1, 2, "*XTA* accumulate dependencies chain like MACs"},
        {"uxtab r0, r1, r2; uxtab r3, r4, r0", {0x51, 0xfa, 0x82, 0xf0, 0x54, 0xfa, 0x80, 0xf3}, 8, 1, 3, "the extracted register of *XTA* does not chain"},
        {"add.w r0, r0, r1, lsl #2; add.w r0, r0, r2, lsl #2", {0x00, 0xeb, 0x81, 0x00, 0x00, 0xeb, 0x82, 0x00}, 8, 1, 3, "operand2 shifted register: latency 2, the Rn input does not chain"},
        {"add.w r0, r1, r2, lsl #2; smlad r3, r4, r5, r0", {0x01, 0xeb, 0x82, 0x00, 0x24, 0xfb, 0x05, 0x03}, 8, 1, 2, "operand2 shifted result chains into a MAC accumulate"},
        {"smlad r0, r1, r2, r0; smlad r0, r3, r4, r0", {0x21, 0xfb, 0x02, 0x00, 0x23, 0xfb, 0x04, 0x00}, 8, 1, 2, "MAC accumulate chains"},
        {"smlad r0, r1, r2, r0; add r3, r0", {0x21, 0xfb, 0x02, 0x00, 0x03, 0x44}, 6, 1, 3, "MAC result latency 2"},
        {"smlad r0, r1, r2, r0; str r0, [r3]", {0x21, 0xfb, 0x02, 0x00, 0x18, 0x60}, 6, 1, 2, "can store a result from the accumulate stage in 1 cycle"},
        {"mul r0, r1, r2; add r3, r0", {0x01, 0xfb, 0x02, 0xf0, 0x03, 0x44}, 6, 1, 3, "MUL result latency 2"},
        {"mul r0, r1, r2; mla r3, r4, r5, r0", {0x01, 0xfb, 0x02, 0xf0, 0x04, 0xfb, 0x05, 0x03}, 8, 1, 2, "MUL result chains into the MLA accumulate"},
        {"muls r0, r1, r0", {0x48, 0x43}, 2, 1, 2, "MULS (16-bit, sets flags) takes 2 cycles"},
        {"muls r0, r1, r0; add r2, r0", {0x48, 0x43, 0x02, 0x44}, 4, 1, 3, "MULS: 2 cycles, its result usable right after"},
        {"and r0, r1, #0x1fc0; add r2, r0", {0x01, 0xf4, 0xfe, 0x50, 0x02, 0x44}, 6, 1, 3, "operand2 shifted constant: latency 2"},
        {"and r0, r1, #0xff; add r2, r0", {0x01, 0xf0, 0xff, 0x00, 0x02, 0x44}, 6, 1, 2, "simple 8-bit constant: 1 stage"},
        {"and r0, r1, #0xff00ff; add r2, r0", {0x01, 0xf0, 0xff, 0x10, 0x02, 0x44}, 6, 1, 2, "constant pattern 00XY00XY: 1 stage"},
        {"ands r0, r1, #0x1fc0", {0x11, 0xf4, 0xfe, 0x50}, 4, 1, 2, "flag-setting shifted constant takes 2 cycles"},
        {"bfi r0, r1, #0, #4; add r2, r0", {0x61, 0xf3, 0x03, 0x00, 0x02, 0x44}, 6, 1, 2, "BFI is a single stage instruction"},
        {"uadd8 r0, r1, r2; smlad r3, r4, r5, r0", {0x81, 0xfa, 0x42, 0xf0, 0x24, 0xfb, 0x05, 0x03}, 8, 1, 3, "DSP/SIMD results do not chain into accumulates"},
        {"qadd r0, r1, r2; add r3, r0", {0x82, 0xfa, 0x81, 0xf0, 0x03, 0x44}, 6, 1, 3, "DSP result latency 2"},
        {"lsl.w r0, r1, #2; add r2, r0", {0x4f, 0xea, 0x81, 0x00, 0x02, 0x44}, 6, 1, 2, "LSL.W #imm (MOV shifted): a plain shift, one stage (assumed)"},
        {"lsls r0, r1, #2; add r2, r0", {0x88, 0x00, 0x02, 0x44}, 4, 1, 2, "LSLS #imm (16-bit): one stage (assumed)"},
        {"smlal r0, r1, r2, r3; smlal r0, r1, r4, r5", {0xc2, 0xfb, 0x03, 0x01, 0xc4, 0xfb, 0x05, 0x01}, 8, 1, 2, "SMLAL accumulate chains (assumed like the 32-bit MACs)"},
        {"sdiv r0, r1, r2", {0x91, 0xfb, 0xf2, 0xf0}, 4, 1, 12, "SDIV: the M4's worst case (the source does not give one)"},
        {"adds r0, r0, r1; adds r2, r2, r3", {0x40, 0x18, 0xd2, 0x18}, 4, 1, 2, "ALU + ALU does not dual-issue"},
        {"ldr r0, [r1]; adds r2, r2, r3", {0x08, 0x68, 0xd2, 0x18}, 4, 1, 2, "load/store + ALU does not dual-issue"},
        {"adds r2, r2, r3; ldr r0, [r1]", {0xd2, 0x18, 0x08, 0x68}, 4, 1, 2, "ALU + load/store does not dual-issue"},
        {"ldr r0, [r1]; ldr r2, [r3]", {0x08, 0x68, 0x1a, 0x68}, 4, 1, 2, "load + load does not dual-issue (not among the source's pairs)"},
        {"nop; adds r0, r0, r1", {0x00, 0xbf, 0x40, 0x18}, 4, 1, 1, "NOP then a 16-bit ALU instruction dual-issue"},
        {"adds r0, r0, r1; nop", {0x40, 0x18, 0x00, 0xbf}, 4, 1, 2, "a NOP in slot 1 does not pair"},
        {"mov r10, r10; it eq; addeq r0, r1", {0xd2, 0x46, 0x08, 0xbf, 0x08, 0x44}, 6, 1, 2, "IT dual-issues with the 16-bit instruction before it"},
        {"add.w r10, r10, #1; it eq; addeq r0, r1", {0x0a, 0xf1, 0x01, 0x0a, 0x08, 0xbf, 0x08, 0x44}, 8, 1, 3, "only 16-bit pairs dual-issue (IT behind a 32-bit instruction)"},
        {"subs r7, #1; bne #-2", {0x01, 0x3f, 0xff, 0xd1}, 4, 1, 3, "taken 16-bit branch behind a flag-setting instruction: 2 cycles"},
        {"subs r7, #1; bne #-2", {0x01, 0x3f, 0xff, 0xd1}, 4, 0, 1, "not-taken 16-bit branch dual-issues even behind a flag-setting instruction"},
        {"subs r7, #1; add r0, r1; bne #-4", {0x01, 0x3f, 0x08, 0x44, 0xfe, 0xd1}, 6, 1, 3, "taken 16-bit branch behind a 16-bit non-flag-setting instruction: 1 cycle"},
        {"subs r7, #1; add r0, r1; bne #-4", {0x01, 0x3f, 0x08, 0x44, 0xfe, 0xd1}, 6, 0, 2, "not-taken 16-bit branch after a non-flag-setting one: 0 cycles"},
        {"subs r7, #1; ldm r6!, {r0, r1, r2, r3}; bne #-4", {0x01, 0x3f, 0x0f, 0xce, 0xfe, 0xd1}, 6, 1, 6, "a taken branch dual-issues with LDM (4 + 1)"},
        {"subs r7, #1; ldm r6!, {r0, r1, r2, r3}; bne #-4", {0x01, 0x3f, 0x0f, 0xce, 0xfe, 0xd1}, 6, 0, 5, "a not-taken branch dual-issues with LDM (4 + 0)"},
        {"add r0, r1; bne.w #-2", {0x08, 0x44, 0x7f, 0xf4, 0xff, 0xaf}, 6, 1, 3, "32-bit conditional branch, taken: 2"},
        {"add r0, r1; bne.w #-2", {0x08, 0x44, 0x7f, 0xf4, 0xff, 0xaf}, 6, 0, 2, "32-bit conditional branch, not taken: 1"},
        {"adds.w r0, r1, r2, lsl #2; bne #-4", {0x11, 0xeb, 0x82, 0x00, 0xfe, 0xd1}, 6, 1, 4, "flags of an operand2-shifted-register instruction come a cycle late"},
        {"adds.w r0, r1, r2, lsl #2; bne #-4", {0x11, 0xeb, 0x82, 0x00, 0xfe, 0xd1}, 6, 0, 2, "... a not-taken 32-bit-preceded branch does not wait for them"},
        {"adds.w r0, r1, r2; bne #-4", {0x11, 0xeb, 0x02, 0x00, 0xfe, 0xd1}, 6, 1, 3, "flags of a plain ADDS.W: no wait"},
        {"adds.w r0, r1, r2; bne #-4", {0x11, 0xeb, 0x02, 0x00, 0xfe, 0xd1}, 6, 0, 2, "flags of a plain ADDS.W, not taken"},
        {"add r0, r1; b #-2", {0x08, 0x44, 0xff, 0xe7}, 4, 1, 2, "B (16-bit) behind a non-flag-setting 16-bit instruction: 1"},
        {"adds r0, r0, r1; b #-2", {0x40, 0x18, 0xff, 0xe7}, 4, 1, 3, "B behind a flag-setting one: 2"},
        {"b.w #-2", {0xff, 0xf7, 0xff, 0xbf}, 4, 1, 2, "B.W: 2"},
        {"bl #-2", {0xff, 0xf7, 0xff, 0xff}, 4, 1, 2, "BL: 2"},
        {"mov r0, r1; bx lr", {0x08, 0x46, 0x70, 0x47}, 4, 1, 2, "BX LR behind MOV (no flags): pairs, 1"},
        {"movs r0, #1; bx lr", {0x01, 0x20, 0x70, 0x47}, 4, 1, 3, "BX LR behind MOVS: 2"},
        {"cbz r0, #4", {0x10, 0xb1}, 2, 1, 2, "CBZ taken (alone): 2"},
        {"cbz r0, #4", {0x10, 0xb1}, 2, 0, 1, "CBZ not taken: 1"},
        {"pop {r4, r5, r6, r7, r8, r9, r10, r11, lr}; mov r10, r10; mov r10, r10; mov r10, r10; bx lr", {0xbd, 0xe8, 0xf0, 0x4f, 0xd2, 0x46, 0xd2, 0x46, 0xd2, 0x46, 0x70, 0x47}, 12, 1, 13, "POP {..., lr}, three fillers, BX LR: the fillers are free"},
        {"pop {r4, r5, r6, r7, r8, r9, r10, r11, lr}; mov r10, r10; mov r10, r10; bx lr", {0xbd, 0xe8, 0xf0, 0x4f, 0xd2, 0x46, 0xd2, 0x46, 0x70, 0x47}, 10, 1, 13, "POP {..., lr}, two fillers, BX LR"},
        {"pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}", {0xbd, 0xe8, 0xf0, 0x8f}, 4, 1, 12, "POP {..., pc} of 9 registers: 9 + 3"},
    };
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        struct tb_info *t = block_of(seqs[i].b, seqs[i].len, 0x20000000);
        uint32_t got = t->cost[seqs[i].taken];
        CHECK(got == (uint32_t)seqs[i].cycles, "%s%s: %u cycles, want %d (%s)", seqs[i].text,
              t->cond_end ? (seqs[i].taken ? " (taken)" : " (not taken)") : "", got, seqs[i].cycles, seqs[i].rule);
        free(t);
    }

    /* IT: a 16-bit instruction inside an IT block sets no flags, so a taken branch after it pairs. */
    {
        static const uint8_t b[] = {0x08, 0xbf, 0x01, 0x30, 0xfe, 0xe7}; /* it eq; addeq r0, #1; b #-2 */
        struct tb_info *t = block_of(b, sizeof b, 0);
        CHECK(t->cost[1] == 3, "it; addeq; b: IT alone 1, addeq 1, b pairs with addeq 1: %u", t->cost[1]);
        free(t);
    }

    /* Across blocks: results still in flight when a block ends delay the next block. */
    {
        static const uint8_t ldr[] = {0x08, 0x68};                         /* ldr r0, [r1] */
        static const uint8_t ldr_bw[] = {0x08, 0x68, 0xff, 0xf7, 0xfe, 0xbf}; /* ldr r0, [r1]; b.w */
        static const uint8_t ldr_bne[] = {0x08, 0x68, 0xfe, 0xd1};        /* ldr r0, [r1]; bne */
        static const uint8_t add[] = {0x02, 0x44};                         /* add r2, r0 */
        static const uint8_t mac0[] = {0x21, 0xfb, 0x02, 0x00};            /* smlad r0, r1, r2, r0 */
        static const uint8_t mac1[] = {0x23, 0xfb, 0x04, 0x00};            /* smlad r0, r3, r4, r0 */
        static const uint8_t use0[] = {0x03, 0x44};                        /* add r3, r0 */
        CHECK(two_blocks(ldr, 2, add, 2, 0) == 3, "ldr | add r2, r0: load-to-use across blocks: 3");
        CHECK(two_blocks(ldr_bw, 6, add, 2, 1) == 4, "ldr; b.w | add: the branch covers the latency: 4");
        CHECK(two_blocks(ldr_bne, 4, add, 2, 0) == 3, "ldr; bne (not taken, paired) | add: 3");
        CHECK(two_blocks(ldr_bne, 4, add, 2, 1) == 3, "ldr; bne (taken, paired) | add: 3");
        CHECK(two_blocks(mac0, 4, mac1, 4, 0) == 2, "smlad | smlad: the accumulate chains across blocks: 2");
        CHECK(two_blocks(mac0, 4, use0, 2, 0) == 3, "smlad | add r3, r0: 3");
    }

    /* XIP cache and QMI. */
    struct xip x;
    memset(&x, 0, sizeof x);
    x.rng = 0x2545f491u;
    CHECK(MISS_NEW == 111 && MISS_CHAINED == 48, "miss latencies %d %d", MISS_NEW, MISS_CHAINED);
    uint64_t m = 0;
    CHECK(xip_access(&x, 0, 0x10000000, 0, &m) == 111, "cold miss");
    CHECK(xip_access(&x, 0, 0x10000004, 111, &m) == 0, "same line hits");
    CHECK(xip_access(&x, 0, 0x10000008, 150, &m) == 48, "next line within the cooldown chains");
    CHECK(xip_access(&x, 0, 0x10000100, 200, &m) == 9 + 111, "non-sequential inside the cooldown deselects");
    CHECK(xip_access(&x, 0, 0x10000200, 10000, &m) == 111, "after the cooldown: a new transfer");
    CHECK(xip_access(&x, 0, 0x10000208, 10000 + 111 + 64 + 1, &m) == 111, "next line after the cooldown");
    CHECK(xip_access(&x, 0, 0x100003f8, 20000, &m) == 111, "line before a 1 KiB boundary");
    CHECK(xip_access(&x, 0, 0x10000400, 20120, &m) == 9 + 111, "no chaining across the page break");
    CHECK(m == 7, "7 misses, got %llu", (unsigned long long)m);
    /* Two ways: lines 8 KiB apart share a set and both stay; a third evicts one of them at
     * random, not the least recently used one. */
    memset(&x, 0, sizeof x);
    x.rng = 0x2545f491u;
    int evicted_a = 0, evicted_b = 0, resident_ok = 1;
    for (uint32_t s = 0; s < 512; s++) {
        uint32_t a = 0x10100000 + 8 * s, b = a + 0x2000, c = a + 0x4000;
        uint64_t now = 1000000 + 1000 * (uint64_t)s;
        xip_access(&x, 0, a, now, &m);
        xip_access(&x, 0, b, now + 200, &m);
        resident_ok &= xip_access(&x, 0, a, now + 400, &m) == 0 && xip_access(&x, 0, b, now + 401, &m) == 0;
        xip_access(&x, 0, a, now + 402, &m); /* a used last: LRU would evict b */
        xip_access(&x, 0, c, now + 403, &m);
        int ha = x.tag[(a >> 3) & (SETS - 1)][0] == (a >> 3) + 1 || x.tag[(a >> 3) & (SETS - 1)][1] == (a >> 3) + 1;
        int hb = x.tag[(b >> 3) & (SETS - 1)][0] == (b >> 3) + 1 || x.tag[(b >> 3) & (SETS - 1)][1] == (b >> 3) + 1;
        resident_ok &= ha + hb == 1;
        evicted_a += !ha, evicted_b += !hb;
    }
    CHECK(resident_ok, "two lines of a set stay; a third leaves exactly one of them");
    CHECK(evicted_a > 150 && evicted_b > 150, "random eviction: a evicted %d times, b %d times of 512", evicted_a, evicted_b);
    CHECK(in_xip(0x10000000) && in_xip(0x13ffffff) && !in_xip(0x14000000) && !in_xip(0x20000000), "window");

    /* Two cores: one link. Calls come in the order QEMU runs the cores (core 0's part of a
     * step, then core 1's), each at the caller's own modelled time. */
    static struct xip y;
    memset(&y, 0, sizeof y);
    y.rng = 0x2545f491u;
    m = 0;
    CHECK(xip_access(&y, 0, 0x10000000, 0, &m) == 111, "core 0: cold miss");
    CHECK(xip_access(&y, 0, 0x10000008, 115, &m) == 48, "core 0: next line chains (transfer 111..163)");
    CHECK(xip_access(&y, 1, 0x10008000, 120, &m) == 163 - 120 + 9 + 111,
          "core 1's miss while core 0's transfer runs: waits for it, then deselects (core 0's was last)");
    CHECK(y.link_wait[1] == 43 && y.link_wait[0] == 0, "the wait is charged to core 1: %llu",
          (unsigned long long)y.link_wait[1]);
    CHECK(xip_access(&y, 1, 0x10008008, 290, &m) == 48, "core 1: its next line chains onto its own transfer (290..338)");
    CHECK(xip_access(&y, 0, 0x10000010, 170, &m) == 338 - 170 + 9 + 111,
          "core 0's chain is broken by core 1's transfers, already placed: waits past both, deselects");
    CHECK(xip_access(&y, 1, 0x10008010, 20000, &m) == 111, "long after: a new transfer, no wait");
    CHECK(xip_access(&y, 0, 0x10000018, 20050, &m) == 20111 - 20050 + 9 + 111,
          "core 0 at a time inside core 1's transfer: waits for its end");
    CHECK(xip_access(&y, 1, 0x10008010, 30000, &m) == 0 && xip_access(&y, 0, 0x10008010, 30000, &m) == 0,
          "one cache: a line core 1 brought in hits for core 0");

    /* SRAM banks (sram=0x38000000): word-striped banks 0-7, then banks 8 and 9. */
    sram_model = 1, sram_base = 0x38000000u;
    for (int c = 0; c < MAX_CORES; c++) bank_slots[c] = calloc(BANK_SLOTS, sizeof *bank_slots[c]);
    CHECK(bank_of(0x38000000) == 0 && bank_of(0x38000004) == 1 && bank_of(0x3800001c) == 7 &&
              bank_of(0x38000020) == 0 && bank_of(0x38080000) == 8 && bank_of(0x38081ffc) == 9 &&
              bank_of(0x383ffffc) == 7,
          "bank mapping");
    CHECK(in_sram(0x38000000) && in_sram(0x383fffff) && !in_sram(0x10000000) && !in_sram(0x50000000), "SRAM window");
    CHECK(sram_access(0, 0x38000000, 100) == 0, "core 0, bank 0, cycle 100");
    CHECK(sram_access(1, 0x38000020, 100) == 1, "core 1, bank 0, the same cycle: waits one cycle");
    CHECK(sram_access(1, 0x38000004, 100) == 0, "core 1, bank 1, the same cycle: no wait");
    CHECK(sram_access(0, 0x38000040, 101) == 1, "core 0, bank 0 in cycle 101, where core 1's delayed access went");
    CHECK(sram_access(1, 0x38080000, 200) == 0 && sram_access(0, 0x38000000, 200) == 0,
          "bank 8 (core 1's stack) and bank 0 in one cycle: no wait");
    CHECK(sram_access(0, 0x38000000, 300) == 0 && sram_access(0, 0x38000020, 300) == 0,
          "one core's own accesses never wait here (its pipeline issues them)");
    sram_model = 0;

    /* Messages: a waiting core resumes at the later of its own time and the send + latency. */
    for (int c = 0; c < MAX_CORES; c++) core_reset(&cores[c]);
    static struct tb_info empty;
    struct mark_info sent_m = {MARK_SENT, &empty}, wait_m = {MARK_WAIT, &empty}, woken_m = {MARK_WOKEN, &empty};
    cores[0].clk = cores[0].start = 1000;
    sync_exec(0, &sent_m);
    cores[1].clk = 200;
    sync_exec(1, &wait_m);
    CHECK(cores[1].waiting == 1, "cost_wait: waiting");
    sync_exec(1, &woken_m);
    CHECK(cores[1].clk == 1000 + SYNC_LATENCY && cores[1].idle == 808 && !cores[1].waiting,
          "core 1 wakes at the send + latency: clk %llu idle %llu", (unsigned long long)cores[1].clk,
          (unsigned long long)cores[1].idle);
    cores[0].clk = 1200;
    sync_exec(0, &wait_m);
    cores[1].start = 5000;
    sync_exec(1, &sent_m);
    sync_exec(0, &woken_m);
    CHECK(cores[0].clk == 5000 + SYNC_LATENCY && cores[0].idle == 5008 - 1200, "core 0 waits for core 1's answer");
    cores[1].start = 6000;
    sync_exec(1, &sent_m);
    cores[0].clk = 9000;
    sync_exec(0, &wait_m);
    sync_exec(0, &woken_m);
    CHECK(cores[0].clk == 9000 && cores[0].idle == 5008 - 1200, "a message already there: no wait");

    printf("rp2350 cost model self-test: %d checks, %s\n", checks, failures ? "FAILED" : "ok");
    return failures != 0;
}
