//! Integer kernels: each has a plain scalar reference twin (`reference`) and the variant the
//! runtime calls (`fast`). One shared test suite (below) demands exact equality between them on
//! random and extreme inputs. On Arm cores with the DSP extension (`cfg(runtime_dsp)`, set by
//! `build.rs`: stable Rust does not expose the `dsp` target feature to `cfg`) the ternary
//! matvec is [`lut::ternary_matvec`] (table lookup over groups of 4 activations, an `asm!` row
//! loop; on the Cortex-M33 cost model it beats the `SMLAD` kernel [`dsp::ternary_matvec`], kept
//! as an alternative) and the int8 dot is [`dsp::int8_dot`] (`SXTB16` + `SMLAD`); everywhere
//! else they are [`fast::ternary_matvec`] and [`fast::int8_dot`].
//!
//! Ternary code mapping (2-bit two's complement, 4 weights per byte, weight `j` of a row in bits
//! `2·(j % 4)` of byte `j / 4`): `0b00 = 0`, `0b01 = +1`, `0b11 = −1`; `0b10` never occurs
//! (the loader refuses it). Sign-extending a 2-bit field is one `SBFX` on Cortex-M33 or a
//! shift-left / arithmetic-shift-right pair anywhere, so decoding needs no table and no branch.

pub mod dsp;
pub mod fast;
pub mod lut;
pub mod reference;

#[cfg(runtime_dsp)]
pub use dsp::int8_dot;
#[cfg(not(runtime_dsp))]
pub use fast::int8_dot;
#[cfg(not(runtime_dsp))]
pub use fast::ternary_matvec;
#[cfg(runtime_dsp)]
pub use lut::ternary_matvec;

/// Decodes one 2-bit ternary code (`0b10` is treated as 0; the loader never lets it through).
#[inline(always)]
pub const fn decode_ternary(code: u8) -> i32 {
    match code & 3 {
        1 => 1,
        3 => -1,
        _ => 0,
    }
}

/// Encodes a weight in `{-1, 0, 1}` as its 2-bit code.
#[inline(always)]
pub const fn encode_ternary(w: i8) -> u8 {
    (w as u8) & 3
}

#[cfg(test)]
mod tests;
