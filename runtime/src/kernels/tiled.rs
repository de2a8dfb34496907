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

/// A tiled matrix being written: every weight 0 until its row is [`put`](Writer::put).
struct Writer<'a> {
    out: &'a mut [u8],
    rows: usize,
    cols: usize,
}

impl<'a> Writer<'a> {
    /// `None` unless `cols` is a multiple of [`BLOCK_COLS`] and `out` is [`tiled_len`]`(rows,
    /// cols)` bytes long.
    fn new(rows: usize, cols: usize, out: &'a mut [u8]) -> Option<Writer<'a>> {
        if !cols.is_multiple_of(BLOCK_COLS) || out.len() != tiled_len(rows, cols) {
            return None;
        }
        out.fill(0x55); // q = 1 (w = 0) in every field
        Some(Writer { out, rows, cols })
    }

    /// Row `r < rows` from `q`, its fields `q = w + 1 ∈ {0, 1, 2}` in column order (the first
    /// `cols` are read; a shorter `q` leaves the rest of the row 0).
    fn put(&mut self, r: usize, mut q: impl Iterator<Item = u8>) {
        if r >= self.rows {
            return;
        }
        let blocks = self.cols / BLOCK_COLS;
        let at = (r / TILE_ROWS) * blocks * BLOCK_BYTES + 4 * (r % TILE_ROWS);
        for k in 0..blocks {
            // Byte `b` of the row's four: field `s` is column `16k + 4s + b`.
            let mut bytes = [0u8; 4];
            for s in 0..4 {
                for byte in bytes.iter_mut() {
                    *byte |= (q.next().unwrap_or(1) & 3) << (2 * s);
                }
            }
            let o = at + k * BLOCK_BYTES;
            if let Some(d) = self.out.get_mut(o..o + 4) {
                d.copy_from_slice(&bytes);
            }
        }
    }

    fn finish(self) -> Option<TiledMatrix<'a>> {
        TiledMatrix::new(self.out, self.rows, self.cols)
    }
}

/// Writes a 2-bit matrix `w [rows][row_bytes]` (codes as in
/// [`decode_ternary`](super::decode_ternary)) into `out` in the tiled layout, `cols = 4 ·
/// row_bytes` (the blob's padded width). Returns the matrix, or `None` when `w` is short, `out`
/// is not [`tiled_len`]`(rows, cols)` bytes long or `cols` is not a multiple of
/// [`BLOCK_COLS`].
pub fn tile_packed2<'a>(
    w: &[u8],
    row_bytes: usize,
    rows: usize,
    out: &'a mut [u8],
) -> Option<TiledMatrix<'a>> {
    // `q = w + 1` of each 2-bit code.
    const Q: [u8; 4] = [1, 2, 1, 0];
    let w = w.get(..rows.checked_mul(row_bytes)?)?;
    let mut t = Writer::new(rows, row_bytes.checked_mul(4)?, out)?;
    for (r, row) in w.chunks_exact(row_bytes.max(1)).enumerate() {
        t.put(
            r,
            row.iter().flat_map(|&b| {
                [
                    Q[b as usize & 3],
                    Q[(b >> 2) as usize & 3],
                    Q[(b >> 4) as usize & 3],
                    Q[(b >> 6) as usize],
                ]
            }),
        );
    }
    t.finish()
}

/// Writes a base-3 matrix `w [rows][row_bytes]` (format v2: column `c` is digit `c /
/// row_bytes` of byte `c % row_bytes`, see [`decode_base3`](super::decode_base3)) into `out` as
/// a `rows` × `cols` tiled matrix (`cols` a multiple of [`BLOCK_COLS`]; columns past `cols` are
/// dropped, columns past the base-3 rows' `5 · row_bytes` are zero). `None` as
/// [`tile_packed2`].
pub fn tile_base3<'a>(
    w: &[u8],
    row_bytes: usize,
    rows: usize,
    cols: usize,
    out: &'a mut [u8],
) -> Option<TiledMatrix<'a>> {
    // `q = w + 1` of the five digits of every byte value (bytes ≥ 243 never pass the loader;
    // they read as zero weights).
    const Q: [[u8; 5]; 256] = {
        let mut t = [[1u8; 5]; 256];
        let mut v = 0;
        while v < 243 {
            let mut k = 0;
            while k < 5 {
                t[v][k] = (super::decode_base3(v as u8, k) + 1) as u8;
                k += 1;
            }
            v += 1;
        }
        t
    };
    let w = w.get(..rows.checked_mul(row_bytes)?)?;
    let mut t = Writer::new(rows, cols, out)?;
    for (r, row) in w.chunks_exact(row_bytes.max(1)).enumerate() {
        t.put(
            r,
            (0..5).flat_map(|k| row.iter().map(move |&b| Q[b as usize][k])),
        );
    }
    t.finish()
}
