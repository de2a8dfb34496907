//! The row-tiled matrix layout: an in-memory copy of a 2-bit ternary matrix in the order the
//! x86-64 kernels read fastest. The blob format does not change; a host that runs the AVX2 or
//! AVX-512 VNNI kernels rewrites its matrices once, at load, into memory the caller provides
//! ([`Model::with_tiled`](crate::Model::with_tiled)). Microcontrollers, NEON and WebAssembly keep
//! reading the blob in place.
//!
//! # Layout
//!
//! A matrix of `rows` × `cols` weights (`cols` as the 2-bit blob pads it: a multiple of
//! [`BLOCK_COLS`]) is cut into *tiles* of [`TILE_ROWS`] = 16 rows (the last one padded with
//! zero weights) and each tile into *blocks* of [`BLOCK_COLS`] = 16 columns, 64 bytes each.
//! Block `k` of tile `t` lies at byte `(t · cols/16 + k) · 64`; its byte `4r + b` (`r < 16` a row
//! of the tile, `b < 4`) holds four 2-bit fields, field `s` (bits `2s, 2s+1`) being
//! `q = w + 1 ∈ {0, 1, 2}` of row `16t + r`, column `16k + 4s + b`:
//!
//! | byte of a block | bits 0-1 | bits 2-3 | bits 4-5 | bits 6-7 |
//! |---|---|---|---|---|
//! | `4r + b` | `q[r][16k + b]` | `q[r][16k + 4 + b]` | `q[r][16k + 8 + b]` | `q[r][16k + 12 + b]` |
//!
//! Two bits per weight, as in the blob (plus the rows padding the last tile): [`tiled_len`].
//!
//! # Why
//!
//! Field `s` of a block meets the four activations `x[16k + 4s .. 16k + 4s + 4]` in every row.
//! Broadcast as one 32-bit word to every lane, they multiply four weights of each of 16 rows:
//! `vpdpbusd` sums them into one `i32` lane per row (a `zmm` holds a whole tile), `vpmaddubsw`
//! into two `i16` lanes per row (a `ymm` holds eight rows). The activations need no
//! permutation and the rows no reduction across lanes; fields come out by masks (`& 0x03`,
//! `& 0x0C` on the bytes and on the bytes shifted right by four: field 1 and 3 then count four
//! times, which exact shifts undo), five instructions per 128 weights instead of the blob
//! layout's seven. The kernels are in `x86_64/tiled.rs`; [`reference`](super::reference) has
//! the scalar twin, and every kernel must equal the blob layout's reference on the same
//! weights.

/// Rows per tile.
pub const TILE_ROWS: usize = 16;
/// Columns per block.
pub const BLOCK_COLS: usize = 16;
/// Bytes per block: 16 rows × 16 columns at 2 bits.
pub const BLOCK_BYTES: usize = TILE_ROWS * BLOCK_COLS / 4;

/// Bytes of a `rows` × `cols` matrix in the tiled layout (`cols` a multiple of
/// [`BLOCK_COLS`]): whole tiles, `4 · cols` bytes each. Saturates.
pub const fn tiled_len(rows: usize, cols: usize) -> usize {
    rows.div_ceil(TILE_ROWS)
        .saturating_mul(cols.saturating_mul(4))
}

/// A ternary matrix in the tiled layout: `rows` × `cols` weights in [`tiled_len`]`(rows, cols)`
/// bytes.
#[derive(Clone, Copy, Debug)]
pub struct TiledMatrix<'a> {
    data: &'a [u8],
    rows: usize,
    cols: usize,
}

impl<'a> TiledMatrix<'a> {
    /// A view of `data` as a `rows` × `cols` tiled matrix: `None` unless `cols` is a multiple
    /// of [`BLOCK_COLS`] and `data` holds exactly [`tiled_len`]`(rows, cols)` bytes.
    pub fn new(data: &'a [u8], rows: usize, cols: usize) -> Option<TiledMatrix<'a>> {
        (cols.is_multiple_of(BLOCK_COLS) && data.len() == tiled_len(rows, cols))
            .then_some(TiledMatrix { data, rows, cols })
    }

    /// The bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Output dimension.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input dimension (padded: the length of the vector the kernels multiply).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Weight `(r, c)` in `{-1, 0, 1}` (0 outside the matrix; `q = 3`, never written, reads
    /// as 2).
    pub fn weight(&self, r: usize, c: usize) -> i32 {
        if r >= self.rows || c >= self.cols {
            return 0;
        }
        let (t, k) = (r / TILE_ROWS, c / BLOCK_COLS);
        let (s, b) = ((c % BLOCK_COLS) / 4, c % 4);
        let at = (t * (self.cols / BLOCK_COLS) + k) * BLOCK_BYTES + 4 * (r % TILE_ROWS) + b;
        let q = self.data.get(at).map_or(1, |v| (v >> (2 * s)) & 3);
        q.min(2) as i32 - 1
    }
}

/// Writes a `rows` × `cols` matrix (`cols` a multiple of [`BLOCK_COLS`]) into `out` in the
/// tiled layout, taking the weights of row `r`, columns `16k..16k + 16` (each in `{-1, 0, 1}`)
/// from `block(r, k)`; rows past `rows` get zero weights. Returns the matrix, or `None` when
/// `out` is not [`tiled_len`]`(rows, cols)` bytes long or `cols` is not a multiple of
/// [`BLOCK_COLS`].
pub fn tile_into<'a>(
    rows: usize,
    cols: usize,
    block: impl Fn(usize, usize) -> [i8; BLOCK_COLS],
    out: &'a mut [u8],
) -> Option<TiledMatrix<'a>> {
    if !cols.is_multiple_of(BLOCK_COLS) || out.len() != tiled_len(rows, cols) {
        return None;
    }
    let blocks = cols / BLOCK_COLS;
    for (i, bytes) in out.chunks_exact_mut(BLOCK_BYTES).enumerate() {
        let (t, k) = (i / blocks, i % blocks);
        for (r, quad) in bytes.chunks_exact_mut(4).enumerate() {
            let row = TILE_ROWS * t + r;
            let w = if row < rows {
                block(row, k)
            } else {
                [0; BLOCK_COLS]
            };
            for (b, byte) in quad.iter_mut().enumerate() {
                let mut v = 0u8;
                for s in 0..4 {
                    v |= ((w[4 * s + b].clamp(-1, 1) + 1) as u8) << (2 * s);
                }
                *byte = v;
            }
        }
    }
    TiledMatrix::new(out, rows, cols)
}

/// [`tile_into`] from a 2-bit matrix `w [rows][row_bytes]` (codes as in
/// [`decode_ternary`](super::decode_ternary)): `cols = 4 · row_bytes`, the blob's padded width.
pub fn tile_packed2<'a>(
    w: &[u8],
    row_bytes: usize,
    rows: usize,
    out: &'a mut [u8],
) -> Option<TiledMatrix<'a>> {
    if w.len() < rows.checked_mul(row_bytes)? {
        return None;
    }
    let block = |r: usize, k: usize| {
        let mut ws = [0i8; BLOCK_COLS];
        if let Some(b4) = w.get(r * row_bytes + 4 * k..r * row_bytes + 4 * k + 4) {
            for (j, v) in ws.iter_mut().enumerate() {
                *v = super::decode_ternary(b4[j / 4] >> (2 * (j % 4))) as i8;
            }
        }
        ws
    };
    tile_into(rows, row_bytes.checked_mul(4)?, block, out)
}

/// [`tile_into`] from a base-3 matrix `w [rows][row_bytes]` (format v2: column `c` is digit
/// `c / row_bytes` of byte `c % row_bytes`, see [`decode_base3`](super::decode_base3)), as a
/// `rows` × `cols` tiled matrix (`cols` a multiple of [`BLOCK_COLS`]; columns past the base-3
/// rows' `5 · row_bytes` get zero weights).
pub fn tile_base3<'a>(
    w: &[u8],
    row_bytes: usize,
    rows: usize,
    cols: usize,
    out: &'a mut [u8],
) -> Option<TiledMatrix<'a>> {
    if w.len() < rows.checked_mul(row_bytes)? || row_bytes == 0 {
        return None;
    }
    // The five digits of every byte value (bytes ≥ 243 never pass the loader; they read 0).
    const DIGITS: [[i8; 5]; 256] = {
        let mut t = [[0i8; 5]; 256];
        let mut v = 0;
        while v < 243 {
            let mut k = 0;
            while k < 5 {
                t[v][k] = super::decode_base3(v as u8, k) as i8;
                k += 1;
            }
            v += 1;
        }
        t
    };
    let block = |r: usize, k: usize| {
        let mut ws = [0i8; BLOCK_COLS];
        for (j, v) in ws.iter_mut().enumerate() {
            let c = BLOCK_COLS * k + j;
            if let Some(b) = w
                .get(r * row_bytes + c % row_bytes)
                .filter(|_| c < 5 * row_bytes)
            {
                *v = DIGITS[*b as usize][c / row_bytes];
            }
        }
        ws
    };
    tile_into(rows, cols, block, out)
}
