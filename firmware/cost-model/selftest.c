/* Self-test of the cost model (rp2350.c): the Thumb decoder, the core costs and the XIP/QMI
 * model, without QEMU. It includes the plugin's source and stubs QEMU's API:
 *   gcc -O2 -Wall -Wextra -Werror -o rp2350-selftest selftest.c && ./rp2350-selftest
 * Encodings from `llvm-mc -triple=thumbv8m.main -mattr=+dsp -show-encoding`. */
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

static int failures;
#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);   \
            printf(__VA_ARGS__);                          \
            printf("\n");                                 \
            failures++;                                   \
        }                                                 \
    } while (0)

static struct dec dec_bytes(const uint8_t *b, int size) {
    unsigned h1 = b[0] | b[1] << 8;
    return size == 4 ? decode32(h1, b[2] | b[3] << 8) : decode16(h1);
}

int main(void) {
    static const struct { uint8_t b[4]; int size; enum cls cls; const char *text; } cases[] = {
        {{0x88, 0x42}, 2, ALU, "cmp r0, r1"},
        {{0x00, 0x22}, 2, ALU, "movs r2, #0"},
        {{0x01, 0xeb, 0xc2, 0x00}, 4, ALU, "add.w r0, r1, r2, lsl #3"},
        {{0x52, 0xfa, 0x93, 0xf1}, 4, ALU, "uxtab r1, r2, r3, ror #8"},
        {{0x2f, 0xfa, 0x92, 0xf1}, 4, ALU, "sxtb16 r1, r2, ror #8"},
        {{0x21, 0xfb, 0x02, 0x00}, 4, MUL, "smlad r0, r1, r2, r0"},
        {{0x06, 0xfb, 0x00, 0x20}, 4, MUL, "mla r0, r6, r0, r2"},
        {{0x81, 0xfb, 0x06, 0x91}, 4, MUL, "smull r9, r1, r1, r6"},
        {{0xe1, 0xfb, 0x02, 0x03}, 4, MUL, "umlal r0, r3, r1, r2"},
        {{0xb3, 0xfb, 0xf2, 0xf3}, 4, DIV, "udiv r3, r3, r2"},
        {{0x91, 0xfb, 0xf2, 0xf0}, 4, DIV, "sdiv r0, r1, r2"},
        {{0x30, 0x8a}, 2, LOAD, "ldrh r0, [r6, #16]"},
        {{0x12, 0x7a}, 2, LOAD, "ldrb r2, [r2, #8]"},
        {{0x12, 0x48}, 2, LOAD, "ldr r0, [pc, #72]"},
        {{0x32, 0xf8, 0x11, 0x10}, 4, LOAD, "ldrh.w r1, [r2, r1, lsl #1]"},
        {{0x51, 0xf8, 0x22, 0x00}, 4, LOAD, "ldr.w r0, [r1, r2, lsl #2]"},
        {{0x11, 0xf8, 0x01, 0x0b}, 4, LOAD, "ldrb r0, [r1], #1"},
        {{0xd0, 0xf8, 0x00, 0xc0}, 4, LOAD, "ldr.w r12, [r0]"},
        {{0x02, 0x60}, 2, STORE, "str r2, [r0]"},
        {{0x41, 0xf8, 0x02, 0x00}, 4, STORE, "str.w r0, [r1, r2]"},
        {{0xd1, 0xe9, 0x00, 0x01}, 4, LDRD, "ldrd r0, r1, [r1]"},
        {{0xcd, 0xe9, 0x00, 0x23}, 4, STRD, "strd r2, r3, [sp]"},
        {{0x80, 0xb5}, 2, STM, "push {r7, lr}"},
        {{0x80, 0xbd}, 2, LDM, "pop {r7, pc}"},
        {{0x08, 0xca}, 2, LDM, "ldm r2!, {r3}"},
        {{0x04, 0xc0}, 2, STM, "stm r0!, {r2}"},
        {{0xf8, 0xd1}, 2, CBRANCH, "bne"},
        {{0xb2, 0xb1}, 2, CBRANCH, "cbz r2"},
        {{0x01, 0xf0, 0xbd, 0x81}, 4, CBRANCH, "beq.w"},
        {{0x00, 0xf0, 0x27, 0xb9}, 4, BRANCH, "b.w"},
        {{0x04, 0xf0, 0xca, 0xfc}, 4, BRANCH, "bl"},
        {{0x70, 0x47}, 2, BRANCH, "bx lr"},
        {{0xdf, 0xe8, 0x03, 0xf0}, 4, TABLE, "tbb [pc, r3]"},
        {{0x18, 0xbf}, 2, IT, "it ne"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dec d = dec_bytes(cases[i].b, cases[i].size);
        CHECK(d.cls == cases[i].cls, "%s: class %d, want %d", cases[i].text, d.cls, cases[i].cls);
    }

    /* Core costs. */
    struct dec add_r0 = dec_bytes((const uint8_t[]){0x01, 0xeb, 0xc2, 0x00}, 4); /* add.w r0, ... */
    struct dec ldr_r0 = dec_bytes((const uint8_t[]){0xd0, 0xf8, 0x00, 0xc0}, 4); /* ldr.w r12, [r0] */
    struct dec ldrh_a = dec_bytes((const uint8_t[]){0x32, 0xf8, 0x11, 0x10}, 4); /* ldrh.w r1, [r2, r1] */
    struct dec ldrb_p = dec_bytes((const uint8_t[]){0x11, 0xf8, 0x01, 0x0b}, 4); /* ldrb r0, [r1], #1 */
    struct dec pop_pc = dec_bytes((const uint8_t[]){0x80, 0xbd}, 2);
    struct dec push2 = dec_bytes((const uint8_t[]){0x80, 0xb5}, 2);
    CHECK(cost(&ldr_r0, NULL) == 2, "ldr alone: 2");
    CHECK(cost(&ldr_r0, &add_r0) == 3, "ldr after the add that forms its address: 3");
    CHECK(cost(&ldrh_a, &ldr_r0) == 1, "independent ldr after ldr: pipelined, 1");
    CHECK(cost(&ldr_r0, &ldrb_p) == 2, "ldr [r0] after ldrb r0: not pipelined, 2");
    CHECK(cost(&pop_pc, NULL) == 1 + 2 + BRANCH_REFILL, "pop {r7, pc}: 1+N+P");
    CHECK(cost(&push2, NULL) == 3, "push {r7, lr}: 1+N");
    CHECK(cost(&(struct dec){DIV, 0, -1, -1, -1, 0, 0, 0}, NULL) == DIV_CYCLES, "divide");
    CHECK(cost(&(struct dec){BRANCH, -1, -1, -1, -1, 0, 0, 0}, NULL) == 1 + BRANCH_REFILL, "b");

    /* XIP cache and QMI. */
    CHECK(MISS_NEW == 111 && MISS_CHAINED == 48, "miss latencies %d %d", MISS_NEW, MISS_CHAINED);
    uint64_t m = 0;
    CHECK(xip_access(0x10000000, 0, &m) == 111, "cold miss");
    CHECK(xip_access(0x10000004, 111, &m) == 0, "same line hits");
    CHECK(xip_access(0x10000008, 150, &m) == 48, "next line within the cooldown chains");
    CHECK(xip_access(0x10000100, 200, &m) == 9 + 111, "non-sequential inside the cooldown deselects");
    CHECK(xip_access(0x10000200, 10000, &m) == 111, "after the cooldown: a new transfer");
    CHECK(xip_access(0x10000208, 10000 + 111 + 64 + 1, &m) == 111, "next line after the cooldown");
    CHECK(xip_access(0x100003f8, 20000, &m) == 111, "line before a 1 KiB boundary");
    CHECK(xip_access(0x10000400, 20120, &m) == 9 + 111, "no chaining across the page break");
    CHECK(m == 7, "7 misses, got %llu", (unsigned long long)m);
    /* Two ways: lines 8 KiB apart share a set; a third evicts the least recently used. */
    uint32_t a = 0x10100000, b = a + 0x2000, c = a + 0x4000;
    xip_access(a, 100000, &m);
    xip_access(b, 200000, &m);
    CHECK(xip_access(a, 300000, &m) == 0 && xip_access(b, 300001, &m) == 0, "two ways hold two lines");
    xip_access(c, 400000, &m); /* evicts a (b was used last) */
    CHECK(xip_access(b, 500000, &m) == 0, "b stays");
    CHECK(xip_access(a, 600000, &m) != 0, "a was evicted");
    CHECK(in_xip(0x10000000) && in_xip(0x13ffffff) && !in_xip(0x14000000) && !in_xip(0x20000000), "window");

    printf("rp2350 cost model self-test: %s\n", failures ? "FAILED" : "ok");
    return failures != 0;
}
