/* A cycle-approximate cost model of the RP2350 (Cortex-M33 at 150 MHz, XIP flash) as a
 * QEMU TCG plugin, for the firmware's `qemu` board (mps2-an505, Cortex-M33).
 *
 * Plugin API v1 (QEMU 7.2 as Debian ships it: -plugin works, but no qemu-plugin.h is
 * installed, so the few declarations needed are written out below).
 *
 *   gcc -O2 -shared -fPIC -o librp2350.so rp2350.c
 *   qemu-system-arm -machine mps2-an505 -cpu cortex-m33 ... \
 *     -plugin ./librp2350.so,mark=0x10001234 -d plugin -D cost.log -kernel firmware.elf
 *
 * What it models (firmware/COST.md, "Cost model", lists every rule with its source and
 * says where the model can be wrong):
 *  - Core: every executed Thumb instruction is decoded and issued in order through a
 *    Cortex-M33 pipeline with the timings measured on RP2350 silicon (jnk0le, "pipeline
 *    cycle test", doc/cortex_m33.md): loads issue in 1 cycle and their result is usable 2
 *    cycles later (1 cycle later as a MAC accumulator or as store data); extends,
 *    operand2-shifted instructions, multiplies and DSP/SIMD instructions have a 2-cycle
 *    result latency (MACs, `*XTA*` and operand2-shifted results reach a following MAC's or
 *    `*XTA*`'s accumulate input in 1); LDRD/STRD 2 cycles, LDM/STM/PUSH/POP N; a taken
 *    branch 2 cycles, 1 when it dual-issues behind a 16-bit instruction that sets no flags;
 *    a not-taken 16-bit branch dual-issues behind any 16-bit instruction (0 cycles); `IT`
 *    dual-issues behind a 16-bit instruction; a NOP dual-issues with a following 16-bit ALU
 *    or load/store instruction; no other pair dual-issues. `MULS` (16-bit) and flag-setting
 *    instructions with a shifted (rotated) constant take 2 cycles; flags set by an
 *    operand2-shifted-register instruction are ready a cycle later.
 *    A block's schedule is computed once, when QEMU translates it (two variants when it
 *    ends in a conditional branch); results still in flight when a block ends delay the
 *    next block's first users of them.
 *  - Memory: the address window 0x10000000..0x14000000 is XIP flash, read through a
 *    16 KiB 2-way cache of 8-byte lines with random eviction (datasheet §4.4.1), for
 *    data loads and instruction fetches alike; everything else is SRAM or a peripheral
 *    with no wait states. A miss starts a QSPI transfer in the mode the RP2350 boot ROM
 *    leaves on a Pico 2 (EBh quad I/O read, SCK = clk_sys / 3, command prefix on every
 *    transfer, 2 quad suffix cycles, 4 quad dummy cycles, 16 quad data cycles for 8
 *    bytes): 36 SCK + half an SCK of chip-select setup + RXDELAY. A miss to the line right
 *    after the previous transfer within the 64-cycle cooldown chains onto it (16 SCK); a
 *    non-sequential miss inside the cooldown first deselects (half SCK + MIN_DESELECT).
 *    The CPU stalls for the whole transfer.
 *  - The pipeline state is per core (`struct core`), the XIP cache and the QSPI link are
 *    one shared `struct xip`, so a second core can be added without changing either.
 *
 * Output (on the -d plugin log): totals, then one line per execution of the instruction
 * at `mark=ADDR` (the firmware's `cost_checkpoint`), with the running counters, so that a
 * script can take differences around each token; with profile=1, per-block totals over the
 * decode steps (every generator step after the first, which runs the prompt).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- QEMU plugin API v1 */
typedef uint64_t qemu_plugin_id_t;
typedef uint32_t qemu_plugin_meminfo_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef void (*tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*udata_cb_t)(qemu_plugin_id_t, void *);
typedef void (*vcpu_udata_cb_t)(unsigned int, void *);
typedef void (*vcpu_mem_cb_t)(unsigned int, qemu_plugin_meminfo_t, uint64_t, void *);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb_t);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *, vcpu_udata_cb_t,
                                          enum qemu_plugin_cb_flags, void *);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *, vcpu_udata_cb_t,
                                            enum qemu_plugin_cb_flags, void *);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *, vcpu_mem_cb_t,
                                      enum qemu_plugin_cb_flags, enum qemu_plugin_mem_rw, void *);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, udata_cb_t, void *);
void qemu_plugin_outs(const char *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* ------------------------------------------------------------------- core constants */
/* jnk0le, "pipeline cycle test", doc/cortex_m33.md (DWT.CYCCNT on an RP2350, M33 r1p0):
 * "a taken branch ... 2 cycles", 1 when dual-issued. */
#define TAKEN_BRANCH 2
/* Not in that source: the Cortex-M4 TRM's worst case of 2..12 (the operands are not
 * visible to a v1 plugin). */
#define DIV_CYCLES 12

/* ------------------------------------------------------------------- XIP constants */
/* RP2350 datasheet §4.4 / §4.4.1: 16 kB, two-way set-associative, 8-byte lines (2048 lines,
 * bits 12:3 select the line within a way), cached XIP window at 0x10000000 (0x14000000 is
 * the uncached mirror); "Cache eviction policy is random, and the cache only makes one
 * attempt to select an eviction way" (§4.4.1.3). */
#define XIP_BASE 0x10000000u
#define XIP_END 0x14000000u
#define LINE_SHIFT 3
#define SETS 1024
#define WAYS 2

/* QMI as the boot ROM leaves it (no boot2 runs on RP2350: pico-sdk issues #1903, #2172;
 * datasheet §5.2.7 tries EBh quad at divisor 3 first). Registers read back on a Pico 2
 * (pico-sdk #1903): M0_TIMING = 0x60007203 (COOLDOWN 1, PAGEBREAK 1024, MIN_DESELECT 7,
 * RXDELAY 2 half-cycles, CLKDIV 3), M0_RFMT = 0x000492a8 (prefix 8 bits serial; address,
 * suffix 8 bits, dummy 16 bits and data quad), M0_RCMD = 0x00eb. Field meanings:
 * datasheet §12.14.6 (M0_TIMING, M0_RFMT). */
#define CLKDIV 3
#define SCK_PREFIX 8         /* 8-bit command at serial width */
#define SCK_ADDR 6           /* 24 address bits at quad width */
#define SCK_SUFFIX 2         /* 8 suffix bits at quad width */
#define SCK_DUMMY 4          /* DUMMY_LEN 4 x 4 bits at quad width */
#define SCK_DATA 16          /* one 8-byte line at quad width */
#define CS_SETUP 2           /* half an SCK, rounded up to system cycles */
#define RX_DELAY 1           /* RXDELAY = 2 half system cycles */
#define COOLDOWN_CYCLES 64   /* 64 x COOLDOWN */
#define DESELECT_CYCLES (2 + 7) /* half an SCK (rounded up) + MIN_DESELECT */
#define PAGEBREAK_BYTES 1024 /* chained bursts stop at 1 KiB boundaries */
#define MISS_NEW (CS_SETUP + CLKDIV * (SCK_PREFIX + SCK_ADDR + SCK_SUFFIX + SCK_DUMMY + SCK_DATA) + RX_DELAY)
#define MISS_CHAINED (CLKDIV * SCK_DATA)

/* ------------------------------------------------------------------------- decoding */
#define NREG 17   /* r0..r15, then the flags (NZCV) */
#define FLAGS 16
#define NO_REG (-1)

/* How a register is read: the earliest cycle it can be read in differs. */
enum kind {
    K_EARLY, /* an ordinary operand or an address */
    K_MAC,   /* the accumulate input of a multiply-accumulate */
    K_XTA,   /* the accumulate input of SXTAB/UXTAB/...(the register added to) */
    K_STORE, /* the data of a store */
    NKIND
};

/* How a result is produced: its latency to each kind of reader. */
enum res {
    R_ALU,   /* single-stage: 1 to everything */
    R_LOAD,  /* load: 2, but 1 to a MAC accumulate and to store data */
    R_CHAIN, /* two-stage (MAC, extend, operand2 shifted): 2, but 1 to accumulates and stores */
    R_DSP,   /* two-stage DSP/SIMD (QADD, UADD8, PKHBT...): 2, no chaining; 1 to stores */
    NRES
};
static const uint8_t LATENCY[NRES][NKIND] = {
    [R_ALU] = {1, 1, 1, 1},
    [R_LOAD] = {2, 1, 2, 1},
    [R_CHAIN] = {2, 1, 1, 1},
    [R_DSP] = {2, 2, 2, 1},
};

enum cls { ALU, LOAD, STORE, LDRD, STRD, LDM, STM, BRANCH, CBRANCH, CBZ, TABLE, IT, NOP, DIV, OTHER };

struct dec {
    uint8_t cls, size, res;
    uint8_t issue;       /* cycles the instruction occupies the issue stage */
    uint8_t sets_flags;  /* writes NZCV */
    uint8_t flags_late;  /* ... a cycle late (operand2 shifted register) */
    uint8_t writes_pc;   /* a branch of any kind (BX, POP {pc}, LDR pc, MOV pc) */
    uint8_t cond;        /* a branch that may fall through (B<c>, CBZ, a branch inside IT) */
    uint8_t it_len;      /* IT: instructions in its block */
    uint8_t seq;         /* LDM/LDRD/STM/STRD: register i moves in issue cycle i */
    int8_t acc;          /* accumulate input register (NO_REG: none) */
    uint8_t acc_kind;    /* K_MAC or K_XTA */
    int8_t wb;           /* base register written back (NO_REG: none) */
    int8_t target;       /* BX/BLX: the register holding the target (NO_REG: none) */
    uint32_t reads;      /* registers read early (bit FLAGS: the flags) */
    uint8_t n_sd, n_wr;
    int8_t sd[16];       /* store data, in transfer order */
    int8_t wr[16];       /* results, in transfer order */
};

static int popcount16(unsigned v) { return __builtin_popcount(v & 0xffff); }

static void rd(struct dec *d, int r) {
    if (r >= 0 && r < 15) d->reads |= 1u << r; /* the PC is never waited for */
}
static void wr(struct dec *d, int r) {
    if (r == 15) {
        d->writes_pc = 1;
    } else if (r >= 0) {
        d->wr[d->n_wr++] = (int8_t)r;
    }
}
static void sd(struct dec *d, int r) {
    if (r >= 0 && r < 15) d->sd[d->n_sd++] = (int8_t)r;
}
static void reglist(struct dec *d, unsigned list, int load) {
    for (int r = 0; r < 16; r++)
        if (list & (1u << r)) {
            if (load) {
                wr(d, r);
            } else {
                sd(d, r);
            }
        }
}

static struct dec blank(int size) {
    struct dec d;
    memset(&d, 0, sizeof d);
    d.cls = OTHER, d.size = (uint8_t)size, d.res = R_ALU, d.issue = 1, d.acc = NO_REG, d.wb = NO_REG;
    d.target = NO_REG;
    return d;
}

static void flags_out(struct dec *d, int late) { d->sets_flags = 1, d->flags_late = (uint8_t)late; }

static struct dec decode16(unsigned h) {
    struct dec d = blank(2);
    unsigned top5 = h >> 11;
    int r0 = h & 7, r3 = (h >> 3) & 7, r6 = (h >> 6) & 7, r8 = (h >> 8) & 7;
    if (top5 <= 0x02) { /* LSL/LSR/ASR #imm (MOVS when LSL #0): plain shifts */
        d.cls = ALU, rd(&d, r3), wr(&d, r0), flags_out(&d, 0);
    } else if (top5 == 0x03) { /* ADD/SUB register or imm3 */
        d.cls = ALU, rd(&d, r3), wr(&d, r0), flags_out(&d, 0);
        if (!(h & 0x0400)) rd(&d, r6);
    } else if (top5 <= 0x07) { /* MOV/CMP/ADD/SUB imm8 */
        unsigned op = (h >> 11) & 3;
        d.cls = ALU, flags_out(&d, 0);
        if (op != 0) rd(&d, r8);
        if (op != 1) wr(&d, r8);
    } else if ((h >> 10) == 0x10) { /* data processing register */
        unsigned op = (h >> 6) & 0xf;
        d.cls = ALU, flags_out(&d, 0);
        rd(&d, r3);
        if (op != 0x9 && op != 0xf) rd(&d, r0); /* RSB #0 and MVN read only Rm */
        if (op != 0x8 && op != 0xa && op != 0xb) wr(&d, r0); /* TST CMP CMN */
        if (op == 0x5 || op == 0x6) d.reads |= 1u << FLAGS; /* ADC SBC */
        if (op == 0xd) d.res = R_CHAIN, d.issue = 2; /* MULS: 2 cycles (flag-setting, 2 stages) */
    } else if ((h >> 10) == 0x11) { /* special data, BX/BLX */
        unsigned op = (h >> 8) & 3;
        int rdn = (int)(((h >> 4) & 8) | (h & 7)), rm = (int)((h >> 3) & 0xf);
        if (op == 3) {
            d.cls = BRANCH, d.writes_pc = 1, d.target = (int8_t)rm;
            if (h & 0x80) wr(&d, 14); /* BLX */
        } else if (op == 1) {
            d.cls = ALU, rd(&d, rdn), rd(&d, rm), flags_out(&d, 0); /* CMP high */
        } else {
            d.cls = ALU, rd(&d, rm);
            if (op == 0) rd(&d, rdn);
            wr(&d, rdn);
            if (rdn == 15) d.cls = BRANCH;
        }
    } else if (top5 == 0x09) { /* LDR literal */
        d.cls = LOAD, d.res = R_LOAD, wr(&d, r8);
    } else if ((h >> 12) == 0x5) { /* load/store register offset */
        unsigned opb = (h >> 9) & 7;
        rd(&d, r3), rd(&d, r6);
        if (opb <= 2) {
            d.cls = STORE, sd(&d, r0);
        } else {
            d.cls = LOAD, d.res = R_LOAD, wr(&d, r0);
        }
    } else if ((h >> 13) == 0x3 || (h >> 12) == 0x8) { /* LDR/STR(B) imm5, LDRH/STRH imm5 */
        rd(&d, r3);
        if (h & 0x0800) {
            d.cls = LOAD, d.res = R_LOAD, wr(&d, r0);
        } else {
            d.cls = STORE, sd(&d, r0);
        }
    } else if ((h >> 12) == 0x9) { /* SP-relative */
        rd(&d, 13);
        if (h & 0x0800) {
            d.cls = LOAD, d.res = R_LOAD, wr(&d, r8);
        } else {
            d.cls = STORE, sd(&d, r8);
        }
    } else if ((h >> 12) == 0xa) { /* ADR, ADD Rd, SP, #imm */
        d.cls = ALU, wr(&d, r8);
        if (h & 0x0800) rd(&d, 13);
    } else if ((h >> 12) == 0xb) { /* miscellaneous */
        unsigned op = (h >> 8) & 0xf;
        if ((h & 0x0500) == 0x0100) { /* CBZ/CBNZ */
            d.cls = CBZ, d.cond = 1, d.writes_pc = 1, rd(&d, r0);
        } else if (op == 0x0) { /* ADD/SUB SP, SP, #imm */
            d.cls = ALU, rd(&d, 13), wr(&d, 13);
        } else if (op == 0x2) { /* SXTH SXTB UXTH UXTB: extends, two stages */
            d.cls = ALU, d.res = R_CHAIN, rd(&d, r3), wr(&d, r0);
        } else if (op == 0x4 || op == 0x5) { /* PUSH */
            d.cls = STM, d.seq = 1, rd(&d, 13), d.wb = 13;
            reglist(&d, (h & 0xff) | ((h & 0x100) << 6), 0);
            d.issue = (uint8_t)popcount16((h & 0xff) | ((h & 0x100) << 6));
        } else if (op == 0xa) { /* REV REV16 REVSH */
            d.cls = ALU, rd(&d, r3), wr(&d, r0);
        } else if (op == 0xc || op == 0xd) { /* POP */
            d.cls = LDM, d.seq = 1, d.res = R_LOAD, rd(&d, 13), d.wb = 13;
            reglist(&d, (h & 0xff) | ((h & 0x100) << 7), 1);
            d.issue = (uint8_t)popcount16((h & 0xff) | ((h & 0x100) << 7));
        } else if (op == 0xf) {
            if (h & 0xf) {
                unsigned mask = h & 0xf;
                d.cls = IT, d.it_len = (uint8_t)(4 - __builtin_ctz(mask));
            } else {
                d.cls = (h & 0xf0) == 0 ? NOP : OTHER;
            }
        }
    } else if ((h >> 12) == 0xc) { /* LDM/STM */
        int load = (h & 0x0800) != 0;
        d.cls = load ? LDM : STM, d.seq = 1, rd(&d, r8);
        d.issue = (uint8_t)popcount16(h & 0xff);
        if (load) d.res = R_LOAD;
        reglist(&d, h & 0xff, load);
        if (!load || !(h & (1u << r8))) d.wb = (int8_t)r8;
    } else if ((h >> 12) == 0xd) {
        unsigned cond = (h >> 8) & 0xf;
        if (cond < 0xe) d.cls = CBRANCH, d.cond = 1, d.writes_pc = 1, d.reads |= 1u << FLAGS;
    } else if (top5 == 0x1c) {
        d.cls = BRANCH, d.writes_pc = 1;
    }
    if (d.issue == 0) d.issue = 1;
    return d;
}

/* A T32 modified immediate (i:imm3:imm8) that is a rotated 8-bit value: a "shifted
 * constant" in the source's terms (plain 8-bit values and the 00XY00XY / XY00XY00 /
 * XYXYXYXY patterns are "simple"). */
static int rotated_constant(unsigned h1, unsigned h2) {
    unsigned i_imm3 = ((h1 >> 10) & 1) << 3 | ((h2 >> 12) & 7);
    return i_imm3 >= 4;
}

static struct dec decode32(unsigned h1, unsigned h2) {
    struct dec d = blank(4);
    int rn = h1 & 0xf, rd_ = (h2 >> 8) & 0xf, rm = h2 & 0xf, rt = h2 >> 12;
    if ((h1 & 0xfe40) == 0xe800) { /* LDM/STM (IA, DB) */
        unsigned op = (h1 >> 7) & 3;
        if (op == 1 || op == 2) {
            int load = (h1 & 0x10) != 0;
            d.cls = load ? LDM : STM, d.seq = 1, rd(&d, rn);
            d.issue = (uint8_t)popcount16(h2);
            if (load) d.res = R_LOAD;
            reglist(&d, h2, load);
            if ((h1 & 0x20) && !(load && (h2 & (1u << rn)))) d.wb = (int8_t)rn;
        }
    } else if ((h1 & 0xfe40) == 0xe840) { /* load/store dual or exclusive, table branch */
        int load = (h1 & 0x10) != 0;
        if ((h1 & 0xfff0) == 0xe8d0 && (h2 & 0xffe0) == 0xf000) { /* TBB/TBH */
            d.cls = TABLE, d.writes_pc = 1, rd(&d, rn), rd(&d, rm);
        } else if (((h1 >> 7) & 3) == 0 && !(h1 & 0x20)) { /* LDREX/STREX */
            rd(&d, rn);
            if (load) {
                d.cls = LOAD, d.res = R_LOAD, wr(&d, rt);
            } else {
                d.cls = STORE, sd(&d, rt), wr(&d, rd_);
            }
        } else if ((h1 & 0xffe0) == 0xe8c0) { /* STREXB/H, LDREXB/H */
            rd(&d, rn);
            if (load) {
                d.cls = LOAD, d.res = R_LOAD, wr(&d, rt);
            } else {
                d.cls = STORE, sd(&d, rt), wr(&d, rm);
            }
        } else { /* LDRD/STRD */
            d.seq = 1, d.issue = 2, rd(&d, rn);
            if (h1 & 0x20) d.wb = (int8_t)rn;
            if (load) {
                d.cls = LDRD, d.res = R_LOAD, wr(&d, rt), wr(&d, rd_);
            } else {
                d.cls = STRD, sd(&d, rt), sd(&d, rd_);
            }
        }
    } else if ((h1 & 0xfe00) == 0xea00) { /* data processing, shifted register */
        unsigned op = (h1 >> 5) & 0xf, s = (h1 >> 4) & 1;
        int shifted = ((h2 >> 12) & 7) || ((h2 >> 6) & 3) || ((h2 >> 4) & 3) == 3;
        d.cls = ALU, rd(&d, rm);
        if (rn != 15) rd(&d, rn);
        int is_move = (op == 0x2 || op == 0x3) && rn == 15; /* MOV/LSL/LSR/ASR/ROR/RRX, MVN */
        if (op == 0x6) {
            d.res = R_DSP; /* PKHBT/PKHTB */
        } else if (shifted && !(op == 0x2 && rn == 15)) {
            d.res = R_CHAIN; /* operand2 shifted register (a plain shift is one stage) */
        }
        if (rd_ != 15) {
            wr(&d, rd_);
        }
        if (s) flags_out(&d, shifted && !is_move);
        if (op == 0xa || op == 0xb || (((h2 >> 4) & 3) == 3 && !((h2 >> 12) & 7) && !((h2 >> 6) & 3)))
            d.reads |= 1u << FLAGS; /* ADC SBC, RRX */
    } else if ((h1 & 0xec00) == 0xec00) { /* coprocessor, floating point */
        d.cls = OTHER;
    } else if ((h1 & 0xf800) == 0xf000) {
        if (!(h2 & 0x8000)) {
            if (!(h1 & 0x0200)) { /* data processing, modified immediate */
                unsigned op = (h1 >> 5) & 0xf, s = (h1 >> 4) & 1;
                int is_move = (op == 0x2 || op == 0x3) && rn == 15; /* MOV, MVN */
                int rot = rotated_constant(h1, h2) && !is_move;
                d.cls = ALU;
                rd(&d, rn);
                if (rd_ != 15) wr(&d, rd_);
                if (rot) d.res = R_CHAIN;
                if (s) {
                    flags_out(&d, 0);
                    if (rot) d.issue = 2; /* flag-setting with a shifted constant: 2 cycles */
                }
                if (op == 0xa || op == 0xb) d.reads |= 1u << FLAGS;
            } else { /* plain binary immediate */
                unsigned op = (h1 >> 4) & 0x1f;
                d.cls = ALU;
                if (op != 0x04 && op != 0x0c && !(op == 0x16 && rn == 15)) rd(&d, rn); /* not MOVW, MOVT, BFC */
                if (op == 0x0c || op == 0x16) rd(&d, rd_); /* MOVT, BFI/BFC keep bits of Rd */
                wr(&d, rd_);
                if (op == 0x10 || op == 0x12 || op == 0x18 || op == 0x1a) d.res = R_DSP; /* SSAT USAT (16) */
            }
        } else if ((h2 & 0x5000) == 0x0000) { /* B<c>.W or misc control */
            if (((h1 >> 7) & 7) != 7) d.cls = CBRANCH, d.cond = 1, d.writes_pc = 1, d.reads |= 1u << FLAGS;
        } else {
            d.cls = BRANCH, d.writes_pc = 1; /* B.W, BL */
            if (h2 & 0x4000) wr(&d, 14);
        }
    } else if ((h1 & 0xfe00) == 0xf800) { /* load/store single */
        rd(&d, rn);
        if (!(h1 & 0x0080) && rn != 15) {
            if ((h2 & 0x0fc0) == 0) {
                rd(&d, rm); /* register offset */
            } else if ((h2 & 0x0900) == 0x0900) {
                d.wb = (int8_t)rn; /* imm8 with writeback */
            }
        }
        if (h1 & 0x10) {
            if (rt == 15) {
                if (((h1 >> 5) & 3) == 2) {
                    d.cls = LOAD, d.res = R_LOAD, d.writes_pc = 1; /* LDR pc */
                } else {
                    d.cls = OTHER; /* PLD/PLI */
                }
            } else {
                d.cls = LOAD, d.res = R_LOAD, wr(&d, rt);
            }
        } else {
            d.cls = STORE, sd(&d, rt);
        }
    } else if ((h1 & 0xff00) == 0xfa00) { /* data processing, register */
        d.cls = ALU, wr(&d, rd_);
        if (!(h1 & 0x80)) {
            if (h2 & 0x80) { /* SXTAH UXTAH SXTAB16 UXTAB16 SXTAB UXTAB, and their plain forms */
                d.res = R_CHAIN, rd(&d, rm);
                if (rn != 15) d.acc = (int8_t)rn, d.acc_kind = K_XTA;
            } else { /* LSL LSR ASR ROR by register: plain shifts */
                rd(&d, rn), rd(&d, rm);
                if (h1 & 0x10) flags_out(&d, 0);
            }
        } else if (((h2 >> 6) & 3) == 2 && ((h1 >> 4) & 0xc) == 0x8) { /* miscellaneous */
            unsigned op = (h1 >> 4) & 3;
            rd(&d, rn), rd(&d, rm);
            if (op == 0 || op == 2) d.res = R_DSP; /* QADD QDADD QSUB QDSUB; SEL */
            /* REV REV16 RBIT REVSH, CLZ: one stage */
        } else { /* parallel add/subtract (SADD16, UADD8, QSUB8, SHADD16 ...): DSP/SIMD */
            d.res = R_DSP, rd(&d, rn), rd(&d, rm);
        }
    } else if ((h1 & 0xff80) == 0xfb00) { /* multiply, MAC, SMLAD, SMUAD ... USADA8 */
        int ra = h2 >> 12;
        d.cls = ALU, d.res = R_CHAIN, rd(&d, rn), rd(&d, rm), wr(&d, rd_);
        if (ra != 15) d.acc = (int8_t)ra, d.acc_kind = K_MAC;
    } else if ((h1 & 0xff80) == 0xfb80) { /* long multiply, divide */
        unsigned op1 = (h1 >> 4) & 7;
        rd(&d, rn), rd(&d, rm);
        if (op1 == 1 || op1 == 3) {
            d.cls = DIV, d.issue = DIV_CYCLES, wr(&d, rd_);
        } else {
            d.cls = ALU, d.res = R_CHAIN, wr(&d, rt), wr(&d, rd_);
            if (op1 >= 4) { /* SMLAL SMLALxy SMLALD SMLSLD UMLAL UMAAL: accumulate RdLo:RdHi */
                d.acc = (int8_t)rt, d.acc_kind = K_MAC; /* RdHi too: see operands_ready */
            }
        }
    }
    return d;
}

/* --------------------------------------------------------------- the issue pipeline */
/* Which 16-bit pairs dual-issue (the source: "only two 16 bit (.n) instructions can dual
 * issue"; "`nop` can dual issue with arithmetic or load/store instruction"; "can't dual
 * issue arithmetic+arithmetic or load/store + arithmetic"; "not taken branch, can dual
 * issue (from slot 1) even when preceded with flag generating instruction"; "taken branch,
 * can dual issue (from slot 1) when preceded by 16 bit instruction that doesn't generate
 * condition flags"; "`it` can dual issue with preceding instruction"). */
static int is_branch(const struct dec *d) {
    return d->cls == BRANCH || d->cls == CBRANCH || d->cls == CBZ || (d->writes_pc && d->cls == ALU);
}

static int pairs(const struct dec *first, const struct dec *second, int taken) {
    if (first->size != 2 || second->size != 2) return 0;
    if (second->cls == IT) return 1;
    if (is_branch(second)) return taken ? !first->sets_flags : 1;
    if (first->cls == NOP && second->issue == 1 &&
        (second->cls == ALU || second->cls == LOAD || second->cls == STORE) && !second->writes_pc)
        return 1;
    return 0;
}

/* In-order issue state. Times are cycles; `rdy[k][r]` is the first cycle at which a reader
 * of kind k can use register r. */
struct pipe {
    int64_t t;          /* first free issue cycle */
    int64_t prev_last;  /* the last issue cycle of the previous instruction */
    int prev_single;    /* the previous instruction is 16-bit and was not the second of a pair */
    struct dec prev;
    int64_t rdy[NKIND][NREG];
};

/* What the block needs from its entry state, and what it leaves (see struct tb_info). */
struct use {
    uint8_t reg, kind;
    int16_t t; /* the value must be ready by this cycle, from the block's start */
};
struct out {
    uint8_t reg;
    int16_t rdy[NKIND]; /* cycles from the block's start */
};

struct sched_log {
    uint32_t written;   /* registers written so far (their entry values no longer matter) */
    uint32_t seen[NKIND];
    int n_use;
    struct use use[NREG * NKIND];
};

static void note_read(struct sched_log *log, int r, int kind, int64_t t) {
    if (!log || (log->written >> r) & 1 || (log->seen[kind] >> r) & 1) return;
    log->seen[kind] |= 1u << r;
    log->use[log->n_use++] = (struct use){(uint8_t)r, (uint8_t)kind, (int16_t)t};
}

/* "Long ago": registers the block has not written are ready. */
#define LONG_AGO (-64)

static void pipe_reset(struct pipe *p) {
    memset(p, 0, sizeof *p);
    p->prev_last = -1;
    for (int k = 0; k < NKIND; k++)
        for (int r = 0; r < NREG; r++) p->rdy[k][r] = LONG_AGO;
}

/* The first cycle at which `d` could issue as far as its operands go. */
static int64_t operands_ready(const struct pipe *p, const struct dec *d, int taken) {
    int64_t need = 0;
    uint32_t reads = d->reads;
    /* A not-taken branch does not wait for its condition (it issues as if falling through). */
    if (d->writes_pc && d->cond && !taken) reads = 0;
    for (int r = 0; r < NREG; r++)
        if ((reads >> r) & 1 && p->rdy[K_EARLY][r] > need) need = p->rdy[K_EARLY][r];
    /* BX's target register is needed a cycle before an ordinary operand (the source's
     * `pop {..., lr}` ... `bx lr` example: two free cycles, then BX pairs with a third). */
    if (d->target != NO_REG && p->rdy[K_EARLY][(int)d->target] + 1 > need)
        need = p->rdy[K_EARLY][(int)d->target] + 1;
    if (d->acc != NO_REG) {
        int64_t a = p->rdy[d->acc_kind][(int)d->acc];
        if (a > need) need = a;
        /* A 64-bit accumulate (SMLAL...) also reads RdHi. */
        if (d->acc_kind == K_MAC && d->n_wr == 2 && d->wr[0] == d->acc) {
            int64_t b = p->rdy[K_MAC][(int)d->wr[1]];
            if (b > need) need = b;
        }
    }
    for (int i = 0; i < d->n_sd; i++) {
        int64_t s = p->rdy[K_STORE][(int)d->sd[i]] - (d->seq ? i : 0);
        if (s > need) need = s;
    }
    return need;
}

/* Issues `d` (for a branch: taken or not); returns its first issue cycle. Records the
 * block's reads of entry values in `log` (may be NULL). */
static int64_t pipe_issue(struct pipe *p, const struct dec *d, int taken, struct sched_log *log) {
    int64_t need = operands_ready(p, d, taken), c;
    int paired = p->prev_single && pairs(&p->prev, d, taken) && need <= p->prev_last;
    c = paired ? p->prev_last : (need > p->t ? need : p->t);

    if (log) {
        uint32_t reads = d->reads;
        if (d->writes_pc && d->cond && !taken) reads = 0;
        for (int r = 0; r < NREG; r++)
            if ((reads >> r) & 1) note_read(log, r, K_EARLY, c);
        if (d->target != NO_REG) note_read(log, d->target, K_EARLY, c - 1);
        if (d->acc != NO_REG) {
            note_read(log, d->acc, d->acc_kind, c);
            if (d->acc_kind == K_MAC && d->n_wr == 2 && d->wr[0] == d->acc) note_read(log, d->wr[1], K_MAC, c);
        }
        for (int i = 0; i < d->n_sd; i++) note_read(log, d->sd[i], K_STORE, c + (d->seq ? i : 0));
    }

    /* Results. */
    int64_t base = d->cls == DIV ? c + d->issue - 1 : c;
    for (int i = 0; i < d->n_wr; i++) {
        int r = d->wr[i];
        for (int k = 0; k < NKIND; k++) p->rdy[k][r] = base + (d->seq ? i : 0) + LATENCY[d->res][k];
        if (log) log->written |= 1u << r;
    }
    if (d->wb != NO_REG) {
        for (int k = 0; k < NKIND; k++) p->rdy[k][(int)d->wb] = c + 1;
        if (log) log->written |= 1u << d->wb;
    }
    if (d->sets_flags) {
        for (int k = 0; k < NKIND; k++) p->rdy[k][FLAGS] = c + d->issue - 1 + 1 + d->flags_late;
        if (log) log->written |= 1u << FLAGS;
    }

    /* The next free issue cycle. */
    int64_t next;
    if (d->writes_pc && d->cond && !taken) {
        next = paired ? p->t : c + 1; /* falls through */
    } else if (d->writes_pc && (d->cls == LDM || d->cls == LOAD || d->cls == TABLE)) {
        /* POP {..., pc}, LDR pc, TBB/TBH: the target is a load result (usable 2 cycles after
         * the last transfer), then a taken branch. */
        next = c + d->issue - 1 + 2 + TAKEN_BRANCH;
    } else if (d->writes_pc) {
        next = c + TAKEN_BRANCH; /* paired: c is the cycle of the instruction before */
    } else if (paired) {
        next = p->t;
    } else {
        next = c + d->issue;
    }
    if (next < p->t) next = p->t;
    p->t = next;
    p->prev_last = c + d->issue - 1;
    p->prev_single = d->size == 2 && !paired;
    p->prev = *d;
    return c;
}

/* -------------------------------------------------------------------------- blocks */
struct tb_info {
    struct tb_info *next;       /* all blocks, for the profile */
    uint64_t execs;             /* executions */
    uint64_t p_execs[2], core[2], stall[2]; /* per core, inside decode steps (the profile): executions, core and stall cycles */
    uint64_t pc, fallthrough;
    uint32_t cost[2];           /* core cycles: [0] falls through, [1] its branch is taken */
    uint32_t n_insns;
    uint8_t cond_end;           /* ends in a branch that may fall through */
    uint8_t n_use, n_out;
    struct use use[NREG * NKIND]; /* first reads of entry values: they wait for the previous block */
    struct out out[NREG];       /* results, ready at these cycles from the start */
    uint32_t n_lines;
    uint32_t lines[];           /* XIP lines fetched, in order */
};

struct load_info {
    struct tb_info *tb;
    uint32_t offset; /* issue cycle of the access from the block's start */
    int load;        /* a load (else a store: only SRAM banks count it) */
};

/* Schedules the decoded block both ways; fills cost, use, out and each load's offset. */
static void schedule_block(struct tb_info *t, const struct dec *ds, size_t n, uint32_t *offsets) {
    for (int taken = 0; taken < 2; taken++) {
        struct pipe p;
        struct sched_log log;
        pipe_reset(&p);
        memset(&log, 0, sizeof log);
        for (size_t i = 0; i < n; i++) {
            int64_t c = pipe_issue(&p, &ds[i], i + 1 == n ? taken : 1, taken ? NULL : &log);
            if (!taken && offsets) offsets[i] = (uint32_t)c;
        }
        t->cost[taken] = (uint32_t)p.t;
        if (!taken) {
            t->n_use = (uint8_t)log.n_use;
            memcpy(t->use, log.use, sizeof log.use[0] * (size_t)log.n_use);
            t->n_out = 0;
            for (int r = 0; r < NREG; r++)
                if ((log.written >> r) & 1) {
                    struct out *o = &t->out[t->n_out++];
                    o->reg = (uint8_t)r;
                    for (int k = 0; k < NKIND; k++) o->rdy[k] = (int16_t)p.rdy[k][r];
                }
        }
    }
    t->cond_end = n > 0 && ds[n - 1].writes_pc && ds[n - 1].cond;
    if (!t->cond_end) t->cost[0] = t->cost[1];
}

/* --------------------------------------------------------------- XIP cache and QMI */
#define MAX_CORES 2

/* One QSPI transfer on the link: [start, end) in modelled cycles, the line it fetched. */
struct xfer {
    uint64_t start, end;
    uint32_t line;
};

/* The transfers one core started, in its own time order (a core stalls for its own transfer,
 * so they never overlap and both ends increase): the last XFERS of them. */
#define XFERS 8192
struct xfers {
    struct xfer r[XFERS];
    uint64_t n; /* transfers ever; transfer i is r[i % XFERS] */
};

struct xip {
    uint32_t tag[SETS][WAYS]; /* line number + 1, 0 = invalid */
    uint32_t rng;             /* eviction choice (xorshift32) */
    struct xfers link[MAX_CORES];
    uint64_t misses_fetch, misses_load, chained;
    uint64_t link_wait[MAX_CORES]; /* cycles a core's transfer waited for the other core's */
};

static struct xip xip = {.rng = 0x2545f491u};

/* Index (in transfers ever) of the first of `x`'s kept transfers that ends after `t`. */
static uint64_t first_ending_after(const struct xfers *x, uint64_t t) {
    uint64_t lo = x->n > XFERS ? x->n - XFERS : 0, hi = x->n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (x->r[mid % XFERS].end > t) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* One cached XIP access by core `c` at time `now`; returns the stall in cycles.
 *
 * Two cores share the cache (one tag array, updated in the order QEMU runs the cores) and the
 * QSPI link. The link rule: a transfer cannot overlap a transfer of the other core; when the
 * other core's transfer is under way (or would overlap), this one starts when it ends. It
 * chains only onto the transfer that last used the link, when that was this core's and for
 * the line before; any other transfer inside the cooldown means a deselect first. With one
 * core this is the one-core rule exactly. A conflict is charged to the core that QEMU runs
 * second (the order of its run, not of modelled time, decides which core waits). */
static uint32_t xip_access(struct xip *x, int c, uint32_t addr, uint64_t now, uint64_t *misses) {
    uint32_t line = addr >> LINE_SHIFT, set = line & (SETS - 1);
    for (int w = 0; w < WAYS; w++)
        if (x->tag[set][w] == line + 1) return 0;
    /* A line allocates into an invalid way; when both ways hold lines, the one evicted is
     * chosen at random (a fixed-seed xorshift32 stands in for the hardware's source). */
    int way = -1;
    for (int w = 0; w < WAYS && way < 0; w++)
        if (x->tag[set][w] == 0) way = w;
    if (way < 0) {
        x->rng ^= x->rng << 13, x->rng ^= x->rng >> 17, x->rng ^= x->rng << 5;
        way = (int)(x->rng & (WAYS - 1));
    }
    x->tag[set][way] = line + 1;
    (*misses)++;

    struct xfers *own = &x->link[c], *other = &x->link[(c + 1) % MAX_CORES];
    uint64_t s = now;
    const struct xfer *pred = NULL;
    int pred_own = 0;
    if (other != own && other->n) {
        /* Wait for the other core's transfers that overlap; the last one before `s` may break
         * this core's chain. */
        uint64_t j = first_ending_after(other, s);
        while (j < other->n && other->r[j % XFERS].start < s + DESELECT_CYCLES + MISS_NEW) {
            s = other->r[j % XFERS].end;
            j++;
        }
        uint64_t lo = other->n > XFERS ? other->n - XFERS : 0;
        if (j > lo) pred = &other->r[(j - 1) % XFERS];
    }
    if (own->n) {
        const struct xfer *mine = &own->r[(own->n - 1) % XFERS];
        if (!pred || mine->end >= pred->end) pred = mine, pred_own = 1;
    }
    x->link_wait[c] += s - now;
    uint32_t lat;
    int in_cooldown = pred && s <= pred->end + COOLDOWN_CYCLES;
    if (in_cooldown && pred_own && line == pred->line + 1 && (addr & (PAGEBREAK_BYTES - 1)) >= (1u << LINE_SHIFT)) {
        lat = MISS_CHAINED;
        x->chained++;
    } else if (in_cooldown) {
        lat = DESELECT_CYCLES + MISS_NEW;
    } else {
        lat = MISS_NEW;
    }
    own->r[own->n % XFERS] = (struct xfer){s, s + lat, line};
    own->n++;
    return (uint32_t)(s + lat - now);
}

static int in_xip(uint64_t a) { return a >= XIP_BASE && a < XIP_END; }

/* ----------------------------------------------------------------------- SRAM banks */
/* RP2350 datasheet §2.1, §4.2: SRAM0-7 (512 KiB) are striped word by word over 8 banks, SRAM8
 * and SRAM9 (4 KiB each) are a bank each; a bank serves one access per cycle. With sram=BASE
 * the twin's RAM from BASE on is mapped like that: BASE + 512 KiB and + 516 KiB are banks 8 and
 * 9 (core 1's stack, memory-an521.x), other addresses striped by word. The rule: a data access
 * (load or store; each at its instruction's issue cycle) to a bank the other core accessed in
 * the same cycle waits one cycle; the core QEMU runs second is the one that waits (as for the
 * link). Instruction fetches from SRAM are not counted (as in the one-core model). */
#define BANK_SLOTS (1u << 20)
struct bank_slot {
    uint64_t t;
    uint32_t banks; /* bit b: bank b accessed in cycle t */
};
static struct bank_slot *bank_slots[MAX_CORES];
static uint64_t sram_base;
static int sram_model;
#define SRAM_WINDOW (4u << 20)

static int bank_of(uint64_t addr) {
    uint64_t off = addr - sram_base;
    if (off >= 512 * 1024 && off < 516 * 1024) return 8;
    if (off >= 516 * 1024 && off < 520 * 1024) return 9;
    return (int)((off >> 2) & 7);
}

static int in_sram(uint64_t a) { return sram_model && a >= sram_base && a < sram_base + SRAM_WINDOW; }

/* Core `c` accesses `addr` in cycle `t`: returns the wait (0 or 1). */
static uint32_t sram_access(int c, uint64_t addr, uint64_t t) {
    if (!bank_slots[0]) return 0;
    int b = bank_of(addr);
    uint32_t stall = 0;
    const struct bank_slot *o = &bank_slots[(c + 1) % MAX_CORES][t & (BANK_SLOTS - 1)];
    if (o->t == t && (o->banks >> b) & 1) stall = 1;
    t += stall;
    struct bank_slot *m = &bank_slots[c][t & (BANK_SLOTS - 1)];
    if (m->t != t) m->t = t, m->banks = 0;
    m->banks |= 1u << b;
    return stall;
}

/* ---------------------------------------------------------------------- the cores */
struct core {
    uint64_t insns, core, fetch_stall, load_stall, bank_stall;
    uint64_t idle;      /* cycles spent waiting for the other core (between cost_wait and cost_woken) */
    uint64_t clk;       /* core cycles + stall cycles + idle: the core's time */
    uint64_t start;     /* when the current block's first instruction issued */
    uint64_t blk_stall; /* data-access stalls inside the current block so far */
    struct tb_info *cur;
    int waiting;        /* between cost_wait and cost_woken: blocks are not charged */
    int64_t rdy[NKIND][NREG]; /* absolute times */
};

static struct core cores[MAX_CORES];

/* The profile counts decode steps only: between marks 2i and 2i+1 for i >= 1 (mark_exec). */
static int in_decode_step;

static int core_index(unsigned vcpu) { return vcpu < MAX_CORES ? (int)vcpu : MAX_CORES - 1; }
static struct core *core_of(unsigned vcpu) { return &cores[core_index(vcpu)]; }

static void core_reset(struct core *k) {
    memset(k, 0, sizeof *k);
    for (int kind = 0; kind < NKIND; kind++)
        for (int r = 0; r < NREG; r++) k->rdy[kind][r] = LONG_AGO;
}

/* Charges the block that ran last, now that the next block's address tells whether its
 * final branch was taken. */
static void finish_block(struct core *k, uint64_t next_pc) {
    struct tb_info *t = k->cur;
    if (!t) return;
    int c = (int)(k - cores);
    int taken = !t->cond_end || next_pc != t->fallthrough;
    uint32_t cost = t->cost[taken];
    uint64_t end = k->start + cost + k->blk_stall;
    k->core += cost;
    if (in_decode_step) t->core[c] += cost;
    for (int i = 0; i < t->n_out; i++)
        for (int kind = 0; kind < NKIND; kind++)
            k->rdy[kind][t->out[i].reg] = (int64_t)end + t->out[i].rdy[kind] - (int64_t)cost;
    k->clk = end;
    k->cur = NULL;
}

/* Starts block `t`: its instruction fetches, then the wait for results of the previous
 * block that its first instructions read. */
static void start_block(struct core *k, struct tb_info *t) {
    int c = (int)(k - cores);
    t->execs++;
    if (in_decode_step) t->p_execs[c]++;
    k->insns += t->n_insns;
    for (uint32_t i = 0; i < t->n_lines; i++) {
        uint32_t s = xip_access(&xip, c, t->lines[i] << LINE_SHIFT, k->clk, &xip.misses_fetch);
        k->fetch_stall += s;
        k->clk += s;
        if (in_decode_step) t->stall[c] += s;
    }
    int64_t delay = 0;
    for (int i = 0; i < t->n_use; i++) {
        int64_t d = k->rdy[t->use[i].kind][t->use[i].reg] - ((int64_t)k->clk + t->use[i].t);
        if (d > delay) delay = d;
    }
    k->core += (uint64_t)delay;
    if (in_decode_step) t->core[c] += (uint64_t)delay;
    k->clk += (uint64_t)delay;
    k->start = k->clk;
    k->blk_stall = 0;
    k->cur = t;
}

static void tb_exec(unsigned vcpu, void *ud) {
    struct tb_info *t = ud;
    struct core *k = core_of(vcpu);
    finish_block(k, t->pc);
    if (k->waiting) return; /* the wait loop: not charged (see cost_woken) */
    start_block(k, t);
}

static void mem_access(unsigned vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *ud) {
    const struct load_info *l = ud;
    struct core *k = core_of(vcpu);
    int c = core_index(vcpu);
    (void)info;
    if (k->waiting) return;
    uint64_t t = k->start + l->offset + k->blk_stall;
    if (in_xip(vaddr) && l->load) {
        uint32_t s = xip_access(&xip, c, (uint32_t)vaddr, t, &xip.misses_load);
        k->load_stall += s;
        k->blk_stall += s;
        if (in_decode_step) l->tb->stall[c] += s;
    } else if (in_sram(vaddr)) {
        uint32_t s = sram_access(c, vaddr, t);
        k->bank_stall += s;
        k->blk_stall += s;
        if (in_decode_step) l->tb->stall[c] += s;
    }
}

/* ------------------------------------------------------------- the two cores in time */
/* Messages between the cores (src/cores.rs): a core calls cost_sent right after it sent one,
 * cost_wait before it waits for one and cost_woken once it has it. The waiting core is
 * charged nothing in between; at cost_woken its time becomes the later of its own time and
 * the sender's time at cost_sent plus SYNC_LATENCY. Messages on each channel (0 -> 1, 1 -> 0)
 * are matched in order. */
/* Assumed, not from a source: the store into the FIFO, the event, the wake from WFE and the
 * read of the FIFO. */
#define SYNC_LATENCY 8
#define SENDS 4096
static uint64_t send_time[MAX_CORES][SENDS];
static uint64_t sent[MAX_CORES], received[MAX_CORES];
static uint64_t syncs;

enum mark_kind { MARK_CHECKPOINT, MARK_SENT, MARK_WAIT, MARK_WOKEN };
struct mark_info {
    enum mark_kind kind;
    struct tb_info *tb;
};

static void sync_exec(unsigned vcpu, void *ud) {
    const struct mark_info *m = ud;
    int c = core_index(vcpu);
    struct core *k = &cores[c];
    switch (m->kind) {
    case MARK_SENT:
        send_time[c][sent[c]++ % SENDS] = k->start;
        break;
    case MARK_WAIT:
        k->waiting = 1;
        break;
    case MARK_WOKEN: {
        int from = (c + 1) % MAX_CORES;
        uint64_t ready = k->clk;
        if (received[from] < sent[from]) {
            uint64_t arrival = send_time[from][received[from] % SENDS] + SYNC_LATENCY;
            if (arrival > ready) ready = arrival;
            received[from]++;
        }
        k->idle += ready - k->clk;
        k->clk = ready;
        k->waiting = 0;
        syncs++;
        start_block(k, m->tb); /* tb_exec skipped it while waiting */
        break;
    }
    default:
        break;
    }
}

/* ------------------------------------------------------------------- marks, output */
static uint64_t mark_pc = ~0ull, sent_pc = ~0ull, wait_pc = ~0ull, woken_pc = ~0ull;
static int verbose_marks = 1;
static int profile; /* profile=1: per-block totals at exit */
static struct tb_info *all_tbs;

#define MAX_MARKS 4096
#define MARK_FIELDS 14
static uint64_t marks[MAX_MARKS][MARK_FIELDS];
static size_t n_marks;

static void mark_exec(unsigned vcpu, void *ud) {
    (void)ud;
    if (vcpu != 0) return;
    if (n_marks < MAX_MARKS) {
        uint64_t *m = marks[n_marks];
        for (int c = 0; c < MAX_CORES; c++) {
            const struct core *k = &cores[c];
            m[7 * c + 0] = k->insns, m[7 * c + 1] = k->core, m[7 * c + 2] = k->fetch_stall;
            m[7 * c + 3] = k->load_stall, m[7 * c + 4] = k->bank_stall, m[7 * c + 5] = k->idle;
            /* the core's time: the one that runs the mark is inside its current block */
            m[7 * c + 6] = c == 0 ? k->start : k->clk;
        }
    }
    n_marks++;
    in_decode_step = n_marks >= 3 && n_marks % 2 == 1;
}

static struct dec decode_insn(const uint8_t *b, size_t size) {
    unsigned h1 = b[0] | b[1] << 8;
    return size >= 4 ? decode32(h1, b[2] | b[3] << 8) : decode16(h1);
}

/* Inside an IT block, 16-bit data processing sets no flags, and a branch may fall through. */
static void apply_it(struct dec *d, int *it_left) {
    if (*it_left > 0) {
        if (d->size == 2 && d->cls == ALU) d->sets_flags = 0;
        if (d->writes_pc) d->cond = 1;
        (*it_left)--;
    }
    if (d->cls == IT) *it_left = d->it_len;
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    size_t n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    struct tb_info *t = calloc(1, sizeof *t + (2 * n + 2) * sizeof(uint32_t));
    struct dec *ds = calloc(n ? n : 1, sizeof *ds);
    uint32_t *offsets = calloc(n ? n : 1, sizeof *offsets);
    if (!t || !ds || !offsets) abort();
    uint32_t last_line = 0;
    int it_left = 0;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        size_t size = qemu_plugin_insn_size(insn);
        ds[i] = decode_insn(qemu_plugin_insn_data(insn), size);
        apply_it(&ds[i], &it_left);
        if (i == 0) t->pc = pc;
        t->fallthrough = pc + size;
        if (in_xip(pc))
            for (uint64_t a = pc; a < pc + size; a += 2) {
                uint32_t line = (uint32_t)(a >> LINE_SHIFT);
                if (t->n_lines == 0 || line != last_line) t->lines[t->n_lines++] = line, last_line = line;
            }
    }
    schedule_block(t, ds, n, offsets);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        enum cls c = ds[i].cls;
        int load = c == LOAD || c == LDRD || c == LDM || c == TABLE;
        int store = c == STORE || c == STRD || c == STM;
        if (load || (store && sram_model)) {
            struct load_info *l = malloc(sizeof *l);
            if (!l) abort();
            l->tb = t, l->offset = offsets[i], l->load = load;
            /* QEMU 7.2 never calls back for QEMU_PLUGIN_MEM_R alone; the instruction is a
             * load (or a store), so every access it makes is a read (or a write) anyway. */
            qemu_plugin_register_vcpu_mem_cb(insn, mem_access, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, l);
        }
        uint64_t pc = qemu_plugin_insn_vaddr(insn) & ~1ull;
        if (pc == mark_pc)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, mark_exec, QEMU_PLUGIN_CB_NO_REGS, NULL);
        if (i == 0 && (pc == sent_pc || pc == wait_pc || pc == woken_pc)) {
            struct mark_info *m = malloc(sizeof *m);
            if (!m) abort();
            m->kind = pc == sent_pc ? MARK_SENT : pc == wait_pc ? MARK_WAIT : MARK_WOKEN;
            m->tb = t;
            qemu_plugin_register_vcpu_insn_exec_cb(insn, sync_exec, QEMU_PLUGIN_CB_NO_REGS, m);
        }
    }
    free(ds);
    free(offsets);
    t->n_insns = (uint32_t)n;
    t->next = all_tbs;
    all_tbs = t;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, t);
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    char buf[512];
    (void)id, (void)p;
    for (int c = 0; c < MAX_CORES; c++) finish_block(&cores[c], ~0ull);
    const struct core *k = &cores[0];
    snprintf(buf, sizeof buf,
             "rp2350: insns %llu core %llu fetch_stall %llu load_stall %llu "
             "fetch_misses %llu load_misses %llu chained %llu marks %zu\n",
             (unsigned long long)k->insns, (unsigned long long)k->core, (unsigned long long)k->fetch_stall,
             (unsigned long long)k->load_stall, (unsigned long long)xip.misses_fetch,
             (unsigned long long)xip.misses_load, (unsigned long long)xip.chained, n_marks);
    qemu_plugin_outs(buf);
    for (int c = 0; c < MAX_CORES; c++) {
        const struct core *q = &cores[c];
        snprintf(buf, sizeof buf,
                 "rp2350 core %d: insns %llu core %llu fetch_stall %llu load_stall %llu bank_stall %llu "
                 "idle %llu clk %llu link_wait %llu syncs %llu\n",
                 c, (unsigned long long)q->insns, (unsigned long long)q->core,
                 (unsigned long long)q->fetch_stall, (unsigned long long)q->load_stall,
                 (unsigned long long)q->bank_stall, (unsigned long long)q->idle, (unsigned long long)q->clk,
                 (unsigned long long)xip.link_wait[c], (unsigned long long)syncs);
        qemu_plugin_outs(buf);
    }
    for (size_t i = 0; verbose_marks && i < n_marks && i < MAX_MARKS; i++) {
        const uint64_t *m = marks[i];
        snprintf(buf, sizeof buf,
                 "mark %zu insns %llu core %llu fetch_stall %llu load_stall %llu bank_stall %llu idle %llu "
                 "clk %llu c1 insns %llu core %llu fetch_stall %llu load_stall %llu bank_stall %llu "
                 "idle %llu clk %llu\n",
                 i, (unsigned long long)m[0], (unsigned long long)m[1], (unsigned long long)m[2],
                 (unsigned long long)m[3], (unsigned long long)m[4], (unsigned long long)m[5],
                 (unsigned long long)m[6], (unsigned long long)m[7], (unsigned long long)m[8],
                 (unsigned long long)m[9], (unsigned long long)m[10], (unsigned long long)m[11],
                 (unsigned long long)m[12], (unsigned long long)m[13]);
        qemu_plugin_outs(buf);
    }
    if (profile) {
        snprintf(buf, sizeof buf, "profile: decode steps %zu\n", n_marks >= 2 ? n_marks / 2 - 1 : 0);
        qemu_plugin_outs(buf);
    }
    for (const struct tb_info *t = all_tbs; profile && t; t = t->next) {
        for (int c = 0; c < MAX_CORES; c++) {
            if (!t->p_execs[c]) continue;
            snprintf(buf, sizeof buf, "%s 0x%llx insns %llu core %llu stall %llu\n", c ? "block1" : "block",
                     (unsigned long long)t->pc, (unsigned long long)(t->p_execs[c] * t->n_insns),
                     (unsigned long long)t->core[c], (unsigned long long)t->stall[c]);
            qemu_plugin_outs(buf);
        }
    }
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const void *info,
                                                               int argc, char **argv) {
    (void)info;
    for (int c = 0; c < MAX_CORES; c++) core_reset(&cores[c]);
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "mark=", 5)) mark_pc = strtoull(argv[i] + 5, NULL, 0) & ~1ull;
        if (!strncmp(argv[i], "sent=", 5)) sent_pc = strtoull(argv[i] + 5, NULL, 0) & ~1ull;
        if (!strncmp(argv[i], "wait=", 5)) wait_pc = strtoull(argv[i] + 5, NULL, 0) & ~1ull;
        if (!strncmp(argv[i], "woken=", 6)) woken_pc = strtoull(argv[i] + 6, NULL, 0) & ~1ull;
        if (!strncmp(argv[i], "sram=", 5)) sram_base = strtoull(argv[i] + 5, NULL, 0), sram_model = 1;
        if (!strcmp(argv[i], "profile=1")) profile = 1;
    }
    if (sram_model)
        for (int c = 0; c < MAX_CORES; c++)
            if (!(bank_slots[c] = calloc(BANK_SLOTS, sizeof *bank_slots[c]))) abort();
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
