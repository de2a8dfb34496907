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
 * What it models (firmware/README.md, "Cost model", lists the sources and the caveats):
 *  - Core: every executed Thumb instruction is decoded and charged the Cortex-M4 TRM
 *    timings (Arm publishes none for the M33; LLVM schedules cortex-m33 with its
 *    CortexM4Model): ALU and all multiplies/MACs (MUL, MLA, SMLAD, SMULL...) 1 cycle,
 *    single loads 2 (1 when pipelined behind a load whose result does not form the
 *    address), stores 1 (2 with a register offset), LDRD/STRD 3, LDM/STM/PUSH/POP 1+N,
 *    +1 when a load/store address uses the result of the instruction just before,
 *    divides 12 (the worst case of 2..12: the operands are not visible to a v1 plugin),
 *    taken branches 1+P with P = 2 (conditional ones are charged P only when taken),
 *    TBB/TBH 3+P.
 *  - Memory: the address window 0x10000000..0x14000000 is XIP flash, read through a
 *    16 KiB 2-way cache of 8-byte lines (LRU assumed), for data loads and instruction
 *    fetches alike; everything else is SRAM or a peripheral with no wait states.
 *    A miss starts a QSPI transfer in the mode the RP2350 boot ROM leaves on a Pico 2
 *    (EBh quad I/O read, SCK = clk_sys / 3, command prefix on every transfer, 2 quad
 *    suffix cycles, 4 quad dummy cycles, 16 quad data cycles for 8 bytes): 36 SCK +
 *    half an SCK of chip-select setup + RXDELAY. A miss to the line right after the
 *    previous transfer within the 64-cycle cooldown chains onto it (16 SCK); a
 *    non-sequential miss inside the cooldown first deselects (half SCK + MIN_DESELECT).
 *    The CPU stalls for the whole transfer.
 *
 * Output (on the -d plugin log): totals, then one line per execution of the instruction
 * at `mark=ADDR` (the firmware's `cost_checkpoint`), with the running counters, so that a
 * script can take differences around each token.
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

/* ------------------------------------------------------------------------ constants */
/* Cortex-M4 TRM (ARM DDI 0439) §3.3 "Instruction set summary" and its load/store pairing
 * notes; LLVM's CortexM4Model (ARMScheduleM4.td), which ARMProcessors.td uses for
 * cortex-m33, gives MispredictPenalty = 2 ("best case branch taken cost"). */
#define BRANCH_REFILL 2 /* P: pipeline refill after a taken branch */
#define DIV_CYCLES 12   /* SDIV/UDIV: 2..12 by operand values; worst case charged */

/* RP2350 datasheet §4.4 / §4.4.1: 16 kB, two-way set-associative, 8-byte lines (2048 lines,
 * bits 12:3 select the line within a way), cached XIP window at 0x10000000 (0x14000000 is
 * the uncached mirror). */
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
enum cls { ALU, MUL, DIV, LOAD, STORE, LDRD, STRD, LDM, STM, BRANCH, CBRANCH, TABLE, IT, OTHER };

struct dec {
    enum cls cls;
    int rd, rd2;    /* registers written (-1 none) */
    int rn, rm;     /* address registers of a load/store (-1 none) */
    int nregs;      /* LDM/STM/PUSH/POP registers */
    int writes_pc;  /* LDM/POP/LDR with PC, ALU to PC */
    int reg_offset; /* store with a register offset */
};

static int popcount16(unsigned v) { return __builtin_popcount(v & 0xffff); }

static struct dec decode16(unsigned h) {
    struct dec d = {OTHER, -1, -1, -1, -1, 0, 0, 0};
    unsigned top5 = h >> 11;
    if (top5 <= 0x03) { /* shift imm, add/sub reg/imm3 */
        d.cls = ALU, d.rd = h & 7;
    } else if (top5 <= 0x07) { /* MOV/CMP/ADD/SUB imm8 */
        d.cls = ALU, d.rd = ((h >> 11) & 3) == 1 ? -1 : (int)((h >> 8) & 7);
    } else if ((h >> 10) == 0x10) { /* data processing register */
        unsigned op = (h >> 6) & 0xf;
        d.cls = op == 0xd ? MUL : ALU;
        d.rd = (op == 0x8 || op == 0xa || op == 0xb) ? -1 : (int)(h & 7); /* TST CMP CMN */
    } else if ((h >> 10) == 0x11) { /* special data, BX/BLX */
        unsigned op = (h >> 8) & 3;
        int rd = (int)(((h >> 4) & 8) | (h & 7));
        if (op == 3) {
            d.cls = BRANCH;
        } else if (op == 1) {
            d.cls = ALU; /* CMP high */
        } else {
            d.cls = ALU, d.rd = rd;
            if (rd == 15) d.cls = BRANCH;
        }
    } else if (top5 == 0x09) { /* LDR literal */
        d.cls = LOAD, d.rd = (h >> 8) & 7, d.rn = 15;
    } else if ((h >> 12) == 0x5) { /* load/store register offset */
        unsigned opb = (h >> 9) & 7;
        d.rn = (h >> 3) & 7, d.rm = (h >> 6) & 7;
        if (opb <= 2) {
            d.cls = STORE, d.reg_offset = 1;
        } else {
            d.cls = LOAD, d.rd = h & 7;
        }
    } else if ((h >> 13) == 0x3 || (h >> 12) == 0x8) { /* LDR/STR(B) imm5, LDRH/STRH imm5 */
        d.rn = (h >> 3) & 7;
        if (h & 0x0800) {
            d.cls = LOAD, d.rd = h & 7;
        } else {
            d.cls = STORE;
        }
    } else if ((h >> 12) == 0x9) { /* SP-relative */
        d.rn = 13;
        if (h & 0x0800) {
            d.cls = LOAD, d.rd = (h >> 8) & 7;
        } else {
            d.cls = STORE;
        }
    } else if ((h >> 12) == 0xa) { /* ADR, ADD SP */
        d.cls = ALU, d.rd = (h >> 8) & 7;
    } else if ((h >> 12) == 0xb) { /* miscellaneous */
        unsigned op = (h >> 5) & 0x7f;
        if ((h & 0x0500) == 0x0100) { /* CBZ/CBNZ */
            d.cls = CBRANCH;
        } else if ((h & 0x0f00) == 0x0400 || (h & 0x0f00) == 0x0500) { /* PUSH */
            d.cls = STM, d.nregs = popcount16(h & 0xff) + ((h >> 8) & 1), d.rn = 13;
        } else if ((h & 0x0f00) == 0x0c00 || (h & 0x0f00) == 0x0d00) { /* POP */
            d.cls = LDM, d.nregs = popcount16(h & 0xff) + ((h >> 8) & 1), d.rn = 13;
            d.writes_pc = (h >> 8) & 1;
        } else if ((h & 0x0f00) == 0x0f00) {
            d.cls = (h & 0xf) ? IT : OTHER;
        } else if ((h & 0x0f00) == 0x0000) {
            d.cls = ALU, d.rd = 13;
        } else if ((h & 0x0f00) == 0x0200 || (h & 0x0f00) == 0x0a00) { /* extend, REV */
            d.cls = ALU, d.rd = h & 7;
        }
        (void)op;
    } else if ((h >> 12) == 0xc) { /* LDM/STM */
        d.rn = (h >> 8) & 7, d.nregs = popcount16(h & 0xff);
        d.cls = (h & 0x0800) ? LDM : STM;
    } else if ((h >> 12) == 0xd) {
        unsigned cond = (h >> 8) & 0xf;
        d.cls = cond >= 0xe ? OTHER : CBRANCH;
    } else if (top5 == 0x1c) {
        d.cls = BRANCH;
    }
    return d;
}

static struct dec decode32(unsigned h1, unsigned h2) {
    struct dec d = {OTHER, -1, -1, -1, -1, 0, 0, 0};
    int rd = (h2 >> 8) & 0xf;
    if ((h1 & 0xfe40) == 0xe800) { /* LDM/STM */
        unsigned op = (h1 >> 7) & 3;
        if (op == 1 || op == 2) {
            d.rn = h1 & 0xf, d.nregs = popcount16(h2);
            if (h1 & 0x10) {
                d.cls = LDM, d.writes_pc = (h2 >> 15) & 1;
            } else {
                d.cls = STM;
            }
        }
    } else if ((h1 & 0xfe40) == 0xe840) { /* exclusives, LDRD/STRD, TBB/TBH */
        if ((h1 & 0xfff0) == 0xe8d0 && (h2 & 0xffe0) == 0xf000) {
            d.cls = TABLE, d.rn = h1 & 0xf, d.rm = h2 & 0xf;
        } else if ((h1 & 0x0180) == 0 || (h1 & 0xffe0) == 0xe8c0) {
            d.rn = h1 & 0xf;
            if (h1 & 0x10) {
                d.cls = LOAD, d.rd = h2 >> 12;
            } else {
                d.cls = STORE;
            }
        } else {
            d.rn = h1 & 0xf;
            if (h1 & 0x10) {
                d.cls = LDRD, d.rd = h2 >> 12, d.rd2 = (h2 >> 8) & 0xf;
            } else {
                d.cls = STRD;
            }
        }
    } else if ((h1 & 0xfe00) == 0xea00) { /* data processing, shifted register */
        d.cls = ALU, d.rd = rd == 15 ? -1 : rd;
    } else if ((h1 & 0xf800) == 0xf000) {
        if (!(h2 & 0x8000)) { /* data processing, immediate */
            d.cls = ALU, d.rd = rd == 15 ? -1 : rd;
        } else if ((h2 & 0x5000) == 0x0000) { /* B<c>.W or misc control */
            d.cls = ((h1 >> 7) & 7) == 7 ? OTHER : CBRANCH;
        } else {
            d.cls = BRANCH; /* B.W, BL */
        }
    } else if ((h1 & 0xfe00) == 0xf800) { /* load/store single */
        int rt = h2 >> 12;
        d.rn = h1 & 0xf;
        if (!(h1 & 0x0080) && d.rn != 15 && (h2 & 0x0fc0) == 0) d.rm = h2 & 0xf, d.reg_offset = 1;
        if (h1 & 0x10) {
            if (rt == 15) {
                if (((h1 >> 5) & 3) == 2) {
                    d.cls = LOAD, d.writes_pc = 1;
                } else {
                    d.cls = OTHER; /* PLD/PLI */
                }
            } else {
                d.cls = LOAD, d.rd = rt;
            }
        } else {
            d.cls = STORE;
        }
    } else if ((h1 & 0xff00) == 0xfa00) { /* data processing, register */
        d.cls = ALU, d.rd = rd;
    } else if ((h1 & 0xff80) == 0xfb00) { /* multiply, MAC, SMLAD, SMUAD ... */
        d.cls = MUL, d.rd = rd;
    } else if ((h1 & 0xff80) == 0xfb80) { /* long multiply, divide */
        unsigned op1 = (h1 >> 4) & 7;
        if (op1 == 1 || op1 == 3) {
            d.cls = DIV, d.rd = rd;
        } else {
            d.cls = MUL, d.rd = rd, d.rd2 = h2 >> 12;
        }
    }
    return d;
}

/* -------------------------------------------------------------------------- state */
struct tb_info {
    struct tb_info *next; /* all blocks, for the profile */
    uint64_t execs, stall; /* executions, and stall cycles charged inside the block */
    uint64_t pc, fallthrough;
    uint32_t cycles; /* static core cycles of the whole block */
    uint32_t n_insns;
    int cond_end;    /* ends with a conditional branch: P charged when taken */
    uint32_t n_lines;
    uint32_t lines[]; /* XIP lines fetched, in order */
};

struct load_info {
    uint32_t offset; /* core cycles from the block's start to this load */
};

static uint64_t insns, core, fetch_stall, load_stall, misses_fetch, misses_load, chained;
static uint64_t block_core;          /* `core` when the current block started */
static const struct tb_info *prev_tb;
static uint64_t mark_pc = ~0ull;
static int verbose_marks = 1;
static int profile;                  /* profile=1: per-block totals at exit */
static struct tb_info *all_tbs;
static struct tb_info *cur_tb;

/* Cache tags: line number + 1 (0 = invalid); lru[set] = way to evict next. */
static uint32_t tag[SETS][WAYS];
static uint8_t lru[SETS];
/* QMI: end time of the last transfer and the line that would chain onto it. */
static uint64_t qmi_end;
static uint32_t qmi_next_line;
static int qmi_active;

static uint64_t now_at(uint32_t offset) { return block_core + offset + fetch_stall + load_stall; }

/* One cached XIP access at time `now`; returns the stall in cycles. */
static uint32_t xip_access(uint32_t addr, uint64_t now, uint64_t *misses) {
    uint32_t line = addr >> LINE_SHIFT, set = line & (SETS - 1);
    for (int w = 0; w < WAYS; w++)
        if (tag[set][w] == line + 1) {
            lru[set] = (uint8_t)(1 - w);
            return 0;
        }
    int w = lru[set];
    tag[set][w] = line + 1;
    lru[set] = (uint8_t)(1 - w);
    (*misses)++;
    uint32_t lat;
    int in_cooldown = qmi_active && now <= qmi_end + COOLDOWN_CYCLES;
    if (in_cooldown && line == qmi_next_line && (addr & (PAGEBREAK_BYTES - 1)) >= (1u << LINE_SHIFT)) {
        lat = MISS_CHAINED;
        chained++;
    } else if (in_cooldown) {
        lat = DESELECT_CYCLES + MISS_NEW;
    } else {
        lat = MISS_NEW;
    }
    qmi_active = 1;
    qmi_end = now + lat;
    qmi_next_line = line + 1;
    return lat;
}

static int in_xip(uint64_t a) { return a >= XIP_BASE && a < XIP_END; }

static void tb_exec(unsigned vcpu, void *ud) {
    struct tb_info *t = ud;
    (void)vcpu;
    if (prev_tb && prev_tb->cond_end && t->pc != prev_tb->fallthrough) core += BRANCH_REFILL;
    prev_tb = t;
    cur_tb = t;
    t->execs++;
    block_core = core;
    for (uint32_t i = 0; i < t->n_lines; i++) {
        uint32_t s = xip_access(t->lines[i] << LINE_SHIFT, now_at(0), &misses_fetch);
        fetch_stall += s;
        t->stall += s;
    }
    core += t->cycles;
    insns += t->n_insns;
}

static void mem_load(unsigned vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *ud) {
    const struct load_info *l = ud;
    (void)vcpu, (void)info;
    if (in_xip(vaddr)) {
        uint32_t s = xip_access((uint32_t)vaddr, now_at(l->offset), &misses_load);
        load_stall += s;
        if (cur_tb) cur_tb->stall += s;
    }
}

#define MAX_MARKS 4096
static uint64_t marks[MAX_MARKS][4];
static size_t n_marks;

static void mark_exec(unsigned vcpu, void *ud) {
    (void)vcpu, (void)ud;
    if (n_marks < MAX_MARKS) {
        marks[n_marks][0] = insns, marks[n_marks][1] = core;
        marks[n_marks][2] = fetch_stall, marks[n_marks][3] = load_stall;
    }
    n_marks++;
}

/* Static cost of one instruction given the one before it in the block. */
static uint32_t cost(const struct dec *d, const struct dec *p) {
    int dep = p && ((p->rd >= 0 && (p->rd == d->rn || p->rd == d->rm)) ||
                    (p->rd2 >= 0 && (p->rd2 == d->rn || p->rd2 == d->rm)));
    int after_alu = p && (p->cls == ALU || p->cls == MUL || p->cls == DIV);
    int after_load = p && p->cls == LOAD && !p->writes_pc;
    switch (d->cls) {
    case ALU: return d->rd == 15 ? 1 + BRANCH_REFILL : 1;
    case MUL: return 1;
    case DIV: return DIV_CYCLES;
    case LOAD:
    case STORE: {
        uint32_t c = d->cls == LOAD ? 2 : (d->reg_offset ? 2 : 1);
        if (dep && after_alu) c += 1;                       /* address waits for the ALU */
        if (after_load && !dep && d->cls == LOAD) c -= 1;   /* LDR after LDR pipelines */
        if (after_load && !dep && d->cls == STORE && c > 1) c -= 1;
        if (d->writes_pc) c += BRANCH_REFILL;
        return c;
    }
    case LDRD:
    case STRD: return 3 + (dep && after_alu);
    case LDM: return 1 + d->nregs + (d->writes_pc ? BRANCH_REFILL : 0);
    case STM: return 1 + d->nregs;
    case BRANCH: return 1 + BRANCH_REFILL;
    case CBRANCH: return 1;
    case TABLE: return 3 + BRANCH_REFILL;
    case IT: return 1;
    default: return 1;
    }
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    size_t n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    struct tb_info *t = calloc(1, sizeof *t + (2 * n + 2) * sizeof(uint32_t));
    if (!t) abort();
    struct dec prev = {OTHER, -1, -1, -1, -1, 0, 0, 0};
    uint32_t last_line = 0;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        size_t size = qemu_plugin_insn_size(insn);
        const uint8_t *b = qemu_plugin_insn_data(insn);
        unsigned h1 = b[0] | b[1] << 8;
        struct dec d = size >= 4 ? decode32(h1, b[2] | b[3] << 8) : decode16(h1);
        if (i == 0) t->pc = pc;
        t->fallthrough = pc + size;
        if (d.cls == LOAD || d.cls == LDRD || d.cls == LDM || d.cls == TABLE) {
            struct load_info *l = malloc(sizeof *l);
            if (!l) abort();
            l->offset = t->cycles;
            /* QEMU 7.2 never calls back for QEMU_PLUGIN_MEM_R alone; the instruction is a
             * load, so every access it makes is a read anyway. */
            qemu_plugin_register_vcpu_mem_cb(insn, mem_load, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, l);
        }
        t->cycles += cost(&d, i ? &prev : NULL);
        t->cond_end = d.cls == CBRANCH;
        if (in_xip(pc))
            for (uint64_t a = pc; a < pc + size; a += 2) {
                uint32_t line = (uint32_t)(a >> LINE_SHIFT);
                if (t->n_lines == 0 || line != last_line) t->lines[t->n_lines++] = line, last_line = line;
            }
        if (pc == mark_pc)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, mark_exec, QEMU_PLUGIN_CB_NO_REGS, NULL);
        prev = d;
    }
    t->n_insns = (uint32_t)n;
    t->next = all_tbs;
    all_tbs = t;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, t);
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    char buf[256];
    (void)id, (void)p;
    snprintf(buf, sizeof buf,
             "rp2350: insns %llu core %llu fetch_stall %llu load_stall %llu "
             "fetch_misses %llu load_misses %llu chained %llu marks %zu\n",
             (unsigned long long)insns, (unsigned long long)core, (unsigned long long)fetch_stall,
             (unsigned long long)load_stall, (unsigned long long)misses_fetch,
             (unsigned long long)misses_load, (unsigned long long)chained, n_marks);
    qemu_plugin_outs(buf);
    for (size_t i = 0; verbose_marks && i < n_marks && i < MAX_MARKS; i++) {
        snprintf(buf, sizeof buf, "mark %zu insns %llu core %llu fetch_stall %llu load_stall %llu\n", i,
                 (unsigned long long)marks[i][0], (unsigned long long)marks[i][1],
                 (unsigned long long)marks[i][2], (unsigned long long)marks[i][3]);
        qemu_plugin_outs(buf);
    }
    for (const struct tb_info *t = all_tbs; profile && t; t = t->next) {
        if (!t->execs) continue;
        snprintf(buf, sizeof buf, "block 0x%llx insns %llu core %llu stall %llu\n", (unsigned long long)t->pc,
                 (unsigned long long)(t->execs * t->n_insns), (unsigned long long)(t->execs * t->cycles),
                 (unsigned long long)t->stall);
        qemu_plugin_outs(buf);
    }
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const void *info,
                                                               int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "mark=", 5)) mark_pc = strtoull(argv[i] + 5, NULL, 0) & ~1ull;
        if (!strcmp(argv[i], "profile=1")) profile = 1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}

