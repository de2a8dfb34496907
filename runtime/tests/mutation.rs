//! Structured mutation tests on valid blobs of several configs (MHA, GQA, MQA and one
//! with unaligned widths):
//! - a flipped weight byte (ternary or embedding) without a checksum fix is exactly
//!   `LoadError::Checksum`;
//! - inflated / shrunk dimensions and tensor-table fields, with the header re-encoded and
//!   `header_len`, `data_offset`, `data_len` and the CRC fixed as an attacker would;
//! - swapped sections, layers and table entries, CRC fixed.
//!
//! Every result is an `Err` or a model that runs a few tokens (Session + Generator) without
//! panicking. Each test prints how many cases it ran.

mod common;

use common::{random_model, Rng};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use runtime::format::{ElemFormat, HeaderInfo, TensorEntry, TensorKind, DATA_ALIGN};
use runtime::format::{MAGIC, PREFIX_LEN, VERSION_MAJOR};
use runtime::Layout;
use runtime::{decode, Config, Dyadic, Generator, LoadError, Model, SamplerConfig, Session};
use std::cell::Cell;
use std::sync::OnceLock;

const fn cfg(v: u32, d: u32, l: u32, h: u32, kv: u32, f: u32, t: u32) -> Config {
    Config {
        vocab_size: v,
        d_model: d,
        n_layers: l,
        n_heads: h,
        n_kv_heads: kv,
        ffn_dim: f,
        ctx_len: t,
        rope_theta: 10000,
        ffn_gated: false,
    }
}

/// MHA, GQA, MQA, one whose widths are not multiples of 16 or 64 (row padding in use), and a
/// gated FFN (format v3: the prefix flag and a seventh matrix per block).
const CONFIGS: [(&str, Config); 5] = [
    ("mha", cfg(65, 32, 2, 2, 2, 64, 16)),
    ("gqa", cfg(40, 32, 2, 4, 2, 48, 12)),
    ("mqa", cfg(30, 48, 1, 4, 1, 96, 8)),
    ("odd", cfg(7, 20, 3, 2, 1, 36, 5)),
    (
        "gated",
        Config {
            ffn_gated: true,
            ..cfg(40, 32, 2, 4, 2, 48, 12)
        },
    ),
];

/// Mutated models bigger than this (data region) are not built: they would only slow the suite.
const MAX_DATA: usize = 512 << 10;

const CASES: u32 = 256;

fn blobs() -> &'static [Vec<u8>] {
    static BLOBS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BLOBS.get_or_init(|| {
        CONFIGS
            .iter()
            .enumerate()
            .map(|(i, (_, c))| random_model(*c, 100 + i as u64).to_blob().unwrap())
            .collect()
    })
}

fn runner() -> TestRunner {
    TestRunner::new(PtConfig {
        // `PROPTEST_CASES` raises the count for a longer local run.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(CASES),
        failure_persistence: None,
        ..PtConfig::default()
    })
}

fn crc(b: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(b)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// A blob taken apart: the postcard header decoded with the crate's own types.
#[derive(Clone, Debug)]
struct Parts {
    minor: u16,
    flags: u32,
    config: Config,
    norm_eps: Dyadic,
    vocab_bytes_len: u32,
    val_loss_micro_nats: Option<u64>,
    metadata: String,
    n_tensors: u32,
    table: Vec<TensorEntry>,
    data: Vec<u8>,
}

impl Parts {
    fn parse(blob: &[u8]) -> Parts {
        let header_len = u32_at(blob, 12) as usize;
        let data_offset = u32_at(blob, 16) as usize;
        let header = &blob[PREFIX_LEN..PREFIX_LEN + header_len];
        let (info, mut rest) = postcard::take_from_bytes::<HeaderInfo>(header).unwrap();
        let mut table = Vec::new();
        for _ in 0..info.n_tensors {
            let (e, r) = postcard::take_from_bytes::<TensorEntry>(rest).unwrap();
            table.push(e);
            rest = r;
        }
        assert!(rest.is_empty());
        Parts {
            minor: u16::from_le_bytes([blob[10], blob[11]]),
            flags: u32_at(blob, 28),
            // The gated FFN is the prefix's flag, not a header field.
            config: Config {
                ffn_gated: u32_at(blob, 28) & runtime::format::FLAG_FFN_GATED != 0,
                ..info.config
            },
            norm_eps: info.norm_eps,
            vocab_bytes_len: info.vocab_bytes_len,
            val_loss_micro_nats: info.val_loss_micro_nats,
            metadata: info.metadata.to_string(),
            n_tensors: info.n_tensors,
            table,
            data: blob[data_offset..].to_vec(),
        }
    }

    /// Re-encodes the blob with consistent `header_len`, `data_offset`, `data_len` and CRC.
    fn build(&self) -> Vec<u8> {
        let info = HeaderInfo {
            config: self.config,
            norm_eps: self.norm_eps,
            vocab_bytes_len: self.vocab_bytes_len,
            val_loss_micro_nats: self.val_loss_micro_nats,
            metadata: &self.metadata,
            n_tensors: self.n_tensors,
        };
        let mut header = postcard::to_allocvec(&info).unwrap();
        for e in &self.table {
            header.extend(postcard::to_allocvec(e).unwrap());
        }
        let header_end = PREFIX_LEN + header.len();
        let data_offset = header_end.div_ceil(DATA_ALIGN) * DATA_ALIGN;
        let mut b = vec![0u8; data_offset];
        b[..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
        b[10..12].copy_from_slice(&self.minor.to_le_bytes());
        b[12..16].copy_from_slice(&(header.len() as u32).to_le_bytes());
        b[16..20].copy_from_slice(&(data_offset as u32).to_le_bytes());
        b[20..24].copy_from_slice(&(self.data.len() as u32).to_le_bytes());
        b[28..32].copy_from_slice(&self.flags.to_le_bytes());
        b[PREFIX_LEN..header_end].copy_from_slice(&header);
        b.extend_from_slice(&self.data);
        let c = crc(&b[PREFIX_LEN..]);
        b[24..28].copy_from_slice(&c.to_le_bytes());
        b
    }
}

fn canonical_table(layout: &Layout) -> Vec<TensorEntry> {
    (0..layout.n_tensors())
        .map(|i| layout.entry(i).unwrap())
        .collect()
}

/// Loads `b`; if it loads, runs a few forwards on a Session and a few tokens of a Generator
/// (whose context is small enough to slide). Returns the load result.
fn load_and_run(b: &[u8]) -> Result<(), LoadError> {
    let m = Model::from_bytes(b)?;
    let c = *m.config();
    let ctx = c.ctx_len.min(3);
    let mut mem = vec![0u8; m.session_bytes(ctx)];
    let mut s = Session::new(m, ctx, &mut mem).expect("session over a loaded model");
    for t in 0..ctx {
        let logits = s.forward((t % c.vocab_size) as u16).expect("forward");
        assert_eq!(logits.len(), c.vocab_size as usize);
    }
    let prompt = [0u16, (1 % c.vocab_size) as u16];
    let sampler = SamplerConfig {
        temperature_milli: 900,
        top_k: 5,
        seed: 7,
    };
    let mut out = Vec::new();
    for t in Generator::new(&mut s, &prompt, sampler).take(2 * ctx as usize + 1) {
        let t = t.expect("generate");
        assert!((t as u32) < c.vocab_size);
        out.extend_from_slice(decode(&m, t));
    }
    for id in 0..=c.vocab_size.min(u16::MAX as u32) as u16 {
        let _ = m.token_bytes(id);
    }
    Ok(())
}

/// Tally of outcomes, printed at the end of each test.
#[derive(Default)]
struct Tally {
    cases: Cell<usize>,
    ok: Cell<usize>,
    err: Cell<usize>,
}

impl Tally {
    fn record(&self, r: &Result<(), LoadError>) {
        self.cases.set(self.cases.get() + 1);
        let c = if r.is_ok() { &self.ok } else { &self.err };
        c.set(c.get() + 1);
    }
    fn report(&self, name: &str) {
        eprintln!(
            "{name}: {} mutation cases ({} loaded and ran, {} refused)",
            self.cases.get(),
            self.ok.get(),
            self.err.get()
        );
    }
}

/// The embedding and every ternary matrix (from the schema).
fn is_weight(kind: TensorKind) -> bool {
    matches!(
        runtime::schema::spec_of(kind).map(|s| s.source),
        Some(runtime::schema::Source::Embedding { .. } | runtime::schema::Source::Ternary { .. })
    )
}

#[test]
fn flipped_weight_byte_is_a_checksum_error() {
    let tally = Tally::default();
    let fixed = Tally::default();
    let strategy = (0..CONFIGS.len(), any::<Index>(), any::<Index>(), 1u8..=255);
    runner()
        .run(&strategy, |(ci, sec, pos, bits)| {
            let blob = &blobs()[ci];
            let m = Model::from_bytes(blob).unwrap();
            let weights: Vec<TensorEntry> = canonical_table(m.layout())
                .into_iter()
                .filter(|e| is_weight(e.kind))
                .collect();
            let e = sec.get(&weights);
            let data_offset = u32_at(blob, 16) as usize;
            let at = data_offset + e.offset as usize + pos.index(e.len as usize);
            let mut x = blob.clone();
            x[at] ^= bits;
            let r = Model::from_bytes(&x).map(|_| ());
            tally.record(&r);
            prop_assert!(
                matches!(r, Err(LoadError::Checksum { .. })),
                "{} {:?} byte {at}: {r:?}",
                CONFIGS[ci].0,
                e.kind
            );
            // Behind a repaired checksum: refused (bad code, non-zero padding) or runs.
            let c = crc(&x[PREFIX_LEN..]);
            x[24..28].copy_from_slice(&c.to_le_bytes());
            fixed.record(&load_and_run(&x));
            Ok(())
        })
        .unwrap();
    tally.report("flipped weight byte, CRC kept");
    fixed.report("flipped weight byte, CRC repaired");
    assert_eq!(tally.ok.get(), 0);
}

/// A mutation of a `u32` field: doubling, off-by-one, zero, `u32::MAX`, halving, random values.
fn mutate(v: u32, op: u8, r: u32) -> u32 {
    match op % 11 {
        0 => v.wrapping_mul(2),
        1 => v.wrapping_add(1),
        2 => v.wrapping_sub(1),
        3 => 0,
        4 => u32::MAX,
        5 => v / 2,
        6 => r,
        7 => r % 64 + 1,
        8 => v.wrapping_add(r % 1024),
        9 => 1 << 15 | (r & 1),
        _ => v.wrapping_mul(r % 5 + 2),
    }
}

fn mutate_config(c: &mut Config, field: u8, op: u8, r: u32) {
    let f = match field % 8 {
        0 => &mut c.vocab_size,
        1 => &mut c.d_model,
        2 => &mut c.n_layers,
        3 => &mut c.n_heads,
        4 => &mut c.n_kv_heads,
        5 => &mut c.ffn_dim,
        6 => &mut c.ctx_len,
        _ => &mut c.rope_theta,
    };
    *f = mutate(*f, op, r);
}

fn mutate_entry(e: &mut TensorEntry, field: u8, op: u8, r: u32) {
    match field % 7 {
        0 => e.offset = mutate(e.offset, op, r),
        1 => e.len = mutate(e.len, op, r),
        2 => e.rows = mutate(e.rows, op, r),
        3 => e.cols = mutate(e.cols, op, r),
        4 => e.layer = mutate(e.layer as u32, op, r) as u16,
        5 => {
            e.format = match e.format {
                ElemFormat::Int8Rows { row_bytes } => ElemFormat::Int8Rows {
                    row_bytes: mutate(row_bytes, op, r),
                },
                ElemFormat::Ternary2 { row_bytes } => ElemFormat::Ternary2 {
                    row_bytes: mutate(row_bytes, op, r),
                },
                ElemFormat::FixedI32 { frac_bits } => ElemFormat::FixedI32 {
                    frac_bits: mutate(frac_bits as u32, op, r) as u8,
                },
                _ => ElemFormat::Ternary2 { row_bytes: r },
            }
        }
        _ => {
            e.kind = match r % 4 {
                0 => TensorKind::Wq,
                1 => TensorKind::Wk,
                2 => TensorKind::Embedding,
                _ => TensorKind::FfnSubNorm,
            }
        }
    }
}

/// Copies the sections of `old` into the positions of `new` (row by row for row-shaped ones,
/// truncated or zero-extended), and writes a one-byte-per-token vocabulary: what an attacker
/// who wants a blob the loader accepts for the new dimensions would do.
fn remap(old: &Layout, old_data: &[u8], new: &Layout) -> Vec<u8> {
    let mut data = vec![0u8; new.data_len()];
    let old_table = canonical_table(old);
    for ne in canonical_table(new) {
        let dst = &mut data[ne.offset as usize..(ne.offset + ne.len) as usize];
        match ne.kind {
            TensorKind::VocabOffsets => {
                for (i, c) in dst.chunks_exact_mut(4).enumerate() {
                    c.copy_from_slice(&(i as u32).to_le_bytes());
                }
                continue;
            }
            TensorKind::VocabBytes => {
                for (i, b) in dst.iter_mut().enumerate() {
                    *b = b'a' + (i % 26) as u8;
                }
                continue;
            }
            _ => {}
        }
        let Some(oe) = old_table
            .iter()
            .find(|o| o.kind == ne.kind && o.layer == ne.layer)
        else {
            continue;
        };
        let src = &old_data[oe.offset as usize..(oe.offset + oe.len) as usize];
        let row_len = |e: &TensorEntry| match e.format {
            ElemFormat::Int8Rows { row_bytes } | ElemFormat::Ternary2 { row_bytes } => {
                row_bytes as usize
            }
            _ if e.kind == TensorKind::Rope => e.cols as usize * 4,
            _ => e.len as usize,
        };
        let (nr, or) = (row_len(&ne), row_len(oe));
        if nr == 0 || or == 0 {
            continue;
        }
        for (d, s) in dst.chunks_mut(nr).zip(src.chunks(or)) {
            let n = d.len().min(s.len());
            d[..n].copy_from_slice(&s[..n]);
        }
    }
    data
}

#[test]
fn inflated_dimensions_and_table_entries() {
    let tally = Tally::default();
    let strategy = (
        0..CONFIGS.len(),
        prop::collection::vec((0u8..11, any::<u8>(), any::<u32>()), 1..4),
        0u8..3,
        prop::collection::vec(
            (any::<Index>(), any::<u8>(), any::<u8>(), any::<u32>()),
            0..3,
        ),
    );
    runner()
        .run(&strategy, |(ci, header_muts, data_mode, entry_muts)| {
            let blob = &blobs()[ci];
            let orig = Parts::parse(blob);
            let old_layout = *Model::from_bytes(blob).unwrap().layout();
            let mut p = orig.clone();
            let mut n_tensors_mut = None;
            for &(field, op, r) in &header_muts {
                match field {
                    0..=7 => mutate_config(&mut p.config, field, op, r),
                    8 => p.vocab_bytes_len = mutate(p.vocab_bytes_len, op, r),
                    9 => n_tensors_mut = Some((op, r)),
                    // Metadata around its 1024-byte limit, or much longer.
                    _ => p.metadata = "m".repeat((mutate(1024, op, r) % 4096) as usize),
                }
            }
            // 0: header only; 1: consistent table and data (sections remapped, vocab rebuilt);
            // 2: consistent table, original data truncated or zero-extended.
            if data_mode == 1 && !header_muts.iter().any(|m| m.0 == 8) {
                p.vocab_bytes_len = p.config.vocab_size;
            }
            if data_mode > 0 {
                if let Ok(new) = Layout::new(p.config, p.vocab_bytes_len) {
                    if new.data_len() <= MAX_DATA {
                        p.table = canonical_table(&new);
                        p.n_tensors = p.table.len() as u32;
                        if data_mode == 1 {
                            p.data = remap(&old_layout, &orig.data, &new);
                        } else {
                            p.data.resize(new.data_len(), 0);
                        }
                    }
                }
            }
            if let Some((op, r)) = n_tensors_mut {
                p.n_tensors = mutate(p.n_tensors, op, r);
            }
            for (i, field, op, r) in &entry_muts {
                if !p.table.is_empty() {
                    let k = i.index(p.table.len());
                    mutate_entry(&mut p.table[k], *field, *op, *r);
                }
            }
            if p.data.len() > MAX_DATA || p.table.len() > 20_000 {
                return Ok(());
            }
            let r = load_and_run(&p.build());
            tally.record(&r);
            if p.config == orig.config
                && p.vocab_bytes_len == orig.vocab_bytes_len
                && p.n_tensors == orig.n_tensors
                && p.metadata.len() <= 1024
                && p.table == orig.table
                && p.data == orig.data
            {
                prop_assert!(r.is_ok(), "no-op mutation refused: {r:?}");
            }
            Ok(())
        })
        .unwrap();
    tally.report("inflated dimensions / table entries");
    // (Loading outcomes are covered deterministically by `every_dimension_mutation_sweep`.)
    assert!(tally.err.get() > 0);
}

/// Exchanges the blocks `a` and `b` (non-overlapping, any lengths) of `data`, moving the bytes
/// between them: the total length stays the same.
fn swap_blocks(data: &[u8], a: (usize, usize), b: (usize, usize)) -> Vec<u8> {
    let (a, b) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    let (a_end, b_end) = (a.0 + a.1, b.0 + b.1);
    assert!(a_end <= b.0);
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&data[..a.0]);
    out.extend_from_slice(&data[b.0..b_end]);
    out.extend_from_slice(&data[a_end..b.0]);
    out.extend_from_slice(&data[a.0..a_end]);
    out.extend_from_slice(&data[b_end..]);
    out
}

#[test]
fn swapped_sections() {
    let tally = Tally::default();
    let strategy = (0..CONFIGS.len(), any::<Index>(), any::<Index>(), 0u8..5);
    runner()
        .run(&strategy, |(ci, i, j, mode)| {
            let blob = &blobs()[ci];
            let orig = Parts::parse(blob);
            let layout = *Model::from_bytes(blob).unwrap().layout();
            let table = &orig.table;
            let ei = *i.get(table);
            let mut p = orig.clone();
            let range = |e: &TensorEntry| e.offset as usize..(e.offset + e.len) as usize;
            let n_layers = layout.config().n_layers as usize;
            // Mode 3 needs two layers; the MQA model has one: swap different-length blocks.
            let mode = if mode == 3 && n_layers < 2 { 1 } else { mode };
            let mut expect_ok = false;
            let mut expect_table_err = false;
            match mode {
                // Two sections of the same length (a different one when there is one).
                0 => {
                    let same: Vec<&TensorEntry> = table
                        .iter()
                        .filter(|e| e.len == ei.len && **e != ei)
                        .collect();
                    if let Some(ej) = (!same.is_empty()).then(|| *j.get(&same)) {
                        let (ri, rj) = (range(&ei), range(ej));
                        let tmp = p.data[ri.clone()].to_vec();
                        p.data.copy_within(rj.clone(), ri.start);
                        p.data[rj].copy_from_slice(&tmp);
                    }
                }
                // Two sections of any lengths, moving what lies between them.
                1 => {
                    let ej = *j.get(table);
                    if range(&ei).end <= range(&ej).start || range(&ej).end <= range(&ei).start {
                        p.data = swap_blocks(
                            &orig.data,
                            (ei.offset as usize, ei.len as usize),
                            (ej.offset as usize, ej.len as usize),
                        );
                    }
                }
                // Two tensor-table entries (data untouched).
                2 => {
                    let k = j.index(table.len());
                    let ki = table.iter().position(|e| *e == ei).unwrap();
                    p.table.swap(ki, k);
                    expect_table_err = table[k] != ei;
                }
                // Two whole layers: still a valid model.
                3 => {
                    let (la, lb) = (i.index(n_layers), j.index(n_layers));
                    let start = |l: usize| {
                        table
                            .iter()
                            .find(|e| e.layer as usize == l && e.kind == TensorKind::LayerScales)
                            .unwrap()
                            .offset as usize
                    };
                    let stride = start(1) - start(0);
                    if la != lb {
                        p.data = swap_blocks(&orig.data, (start(la), stride), (start(lb), stride));
                    }
                    expect_ok = true;
                }
                // Sections and their table entries together (same length, so the data stays in
                // place): the table no longer matches the canonical one.
                _ => {
                    let k = j.index(table.len());
                    let ej = table[k];
                    let ki = table.iter().position(|e| *e == ei).unwrap();
                    if ej.len == ei.len && ki != k {
                        let (ri, rj) = (range(&ei), range(&ej));
                        let tmp = p.data[ri.clone()].to_vec();
                        p.data.copy_within(rj.clone(), ri.start);
                        p.data[rj].copy_from_slice(&tmp);
                        p.table.swap(ki, k);
                        p.table[ki].offset = ei.offset;
                        p.table[k].offset = ej.offset;
                        expect_table_err = p.table != *table;
                    }
                }
            }
            let r = load_and_run(&p.build());
            tally.record(&r);
            if expect_ok {
                prop_assert!(r.is_ok(), "layer swap refused: {r:?}");
            }
            if expect_table_err {
                prop_assert!(
                    matches!(r, Err(LoadError::BadTensorTable { .. })),
                    "table swap: {r:?}"
                );
            }
            Ok(())
        })
        .unwrap();
    tally.report("swapped sections / layers / table entries");
    assert!(tally.ok.get() > 0 && tally.err.get() > 0);
}

/// Deterministic sweep of the named dimension mutations (×2, +1, −1, 0, u32::MAX, /2) on every
/// config field of every model, each in the three table/data modes above.
#[test]
fn every_dimension_mutation_sweep() {
    let tally = Tally::default();
    let mut rng = Rng(5);
    for blob in blobs() {
        let orig = Parts::parse(blob);
        let old_layout = *Model::from_bytes(blob).unwrap().layout();
        for field in 0..9u8 {
            for op in [0u8, 1, 2, 3, 4, 5, 9, 10] {
                for data_mode in 0..3 {
                    let mut p = orig.clone();
                    let r = rng.next_u64() as u32;
                    if field == 8 {
                        p.vocab_bytes_len = mutate(p.vocab_bytes_len, op, r);
                    } else {
                        mutate_config(&mut p.config, field, op, r);
                    }
                    if data_mode == 1 && field != 8 {
                        p.vocab_bytes_len = p.config.vocab_size;
                    }
                    if data_mode > 0 {
                        if let Ok(new) = Layout::new(p.config, p.vocab_bytes_len) {
                            if new.data_len() > MAX_DATA {
                                continue;
                            }
                            p.table = canonical_table(&new);
                            p.n_tensors = p.table.len() as u32;
                            if data_mode == 1 {
                                p.data = remap(&old_layout, &orig.data, &new);
                            } else {
                                p.data.resize(new.data_len(), 0);
                            }
                        }
                    }
                    tally.record(&load_and_run(&p.build()));
                }
            }
        }
    }
    tally.report("dimension sweep");
    assert!(tally.ok.get() > 0 && tally.err.get() > 0);
}
