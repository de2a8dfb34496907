//! Sampling in integer arithmetic: greedy, temperature, top-k, with a seeded PCG32.
//!
//! Same logits, config and seed give the same token on every platform: everything is integer
//! arithmetic with fixed rounding.

use crate::fixed::exp_neg_q24;

/// How to pick the next token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplerConfig {
    /// Temperature in thousandths (`1000` = 1.0). `0` means greedy (argmax, lowest id on ties).
    pub temperature_milli: u32,
    /// Keep only the `top_k` largest logits (ties at the cut: lowest ids first). `0` = all.
    pub top_k: u32,
    /// PRNG seed.
    pub seed: u64,
}

impl SamplerConfig {
    /// Greedy decoding.
    pub const GREEDY: SamplerConfig = SamplerConfig {
        temperature_milli: 0,
        top_k: 0,
        seed: 0,
    };
}

/// PCG32 (XSH-RR, 64-bit state; O'Neill 2014), the reference `pcg32_srandom_r` seeding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pcg32 {
    state: u64,
    inc: u64,
}

impl Pcg32 {
    const MUL: u64 = 6364136223846793005;

    /// Seeds with `seed` on stream `seq`.
    pub const fn new(seed: u64, seq: u64) -> Pcg32 {
        let mut r = Pcg32 {
            state: 0,
            inc: (seq << 1) | 1,
        };
        r.step();
        r.state = r.state.wrapping_add(seed);
        r.step();
        r
    }

    const fn step(&mut self) {
        self.state = self.state.wrapping_mul(Self::MUL).wrapping_add(self.inc);
    }

    /// Next 32 random bits.
    pub const fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.step();
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    /// Next 64 random bits (two draws, high word first).
    pub const fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        (hi << 32) | self.next_u32() as u64
    }
}

/// A sampler: its config and PRNG state.
#[derive(Clone, Copy, Debug)]
pub struct Sampler {
    config: SamplerConfig,
    rng: Pcg32,
}

impl Sampler {
    /// A sampler seeded from `config.seed`.
    pub const fn new(config: SamplerConfig) -> Sampler {
        Sampler {
            config,
            rng: Pcg32::new(config.seed, 0x0B17_4E70),
        }
    }

    /// The config.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Picks a token from Q15.16 logits. `logits` must be non-empty (else 0 is returned).
    ///
    /// With temperature `T` (milli): `p_v ∝ exp((logit_v − max) / T)` over the top-k set,
    /// weights from the integer `exp` in Q30, one 64-bit draw reduced modulo the total.
    /// Cost: two passes over the logits, plus `O(k · V)` to find the top-k cut.
    pub fn sample(&mut self, logits: &[i32]) -> u16 {
        let max = logits.iter().copied().max().unwrap_or(0);
        if self.config.temperature_milli == 0 {
            return logits.iter().position(|l| *l == max).unwrap_or(0) as u16;
        }
        let (cut, n_at_cut) = top_k_cut(logits, self.config.top_k as usize);
        let temp = self.config.temperature_milli as u64;
        let weight = |l: i32| -> u64 {
            // (max − l) / T in Q24: diff < 2^32 (Q16), · 1000 · 2^8 < 2^50.
            let diff = (max as i64 - l as i64) as u64;
            exp_neg_q24(((diff * 1000) << 8) / temp) as u64
        };
        // Total ≤ V · 2^30 < 2^46.
        let mut total = 0u64;
        for_each_kept(logits, cut, n_at_cut, |_, l| total += weight(l));
        if total == 0 {
            return logits.iter().position(|l| *l == max).unwrap_or(0) as u16;
        }
        let r = self.rng.next_u64() % total;
        let mut acc = 0u64;
        let mut pick = None;
        for_each_kept(logits, cut, n_at_cut, |v, l| {
            if pick.is_none() {
                acc += weight(l);
                if acc > r {
                    pick = Some(v);
                }
            }
        });
        pick.unwrap_or(0) as u16
    }
}

/// The `k`-th largest logit (counting repeats) and how many tokens equal to it are kept.
/// `k == 0` or `k >= V` keeps everything (`cut = i32::MIN`, all kept).
fn top_k_cut(logits: &[i32], k: usize) -> (i32, usize) {
    if k == 0 || k >= logits.len() {
        return (i32::MIN, usize::MAX);
    }
    let mut above = 0usize; // tokens strictly greater than `cut`
    let mut cut = i32::MAX;
    let mut first = true;
    loop {
        // The largest value below the previous cut.
        let next = logits
            .iter()
            .copied()
            .filter(|l| first || *l < cut)
            .max()
            .unwrap_or(i32::MIN);
        first = false;
        let count = logits.iter().filter(|l| **l == next).count();
        if above + count >= k {
            return (next, k - above);
        }
        above += count;
        cut = next;
    }
}

/// Calls `f(index, logit)` for each token in the top-k set, in index order.
fn for_each_kept(logits: &[i32], cut: i32, n_at_cut: usize, mut f: impl FnMut(usize, i32)) {
    let mut at_cut = 0usize;
    for (v, &l) in logits.iter().enumerate() {
        if l > cut {
            f(v, l);
        } else if l == cut && at_cut < n_at_cut {
            at_cut += 1;
            f(v, l);
        }
    }
}

#[cfg(test)]
#[allow(clippy::float_arithmetic)] // the tests compare with real-valued references
mod tests {
    use super::*;

    #[test]
    fn pcg32_reference_vector() {
        // pcg32-demo (pcg32_srandom_r(42, 54)): first outputs.
        let mut r = Pcg32::new(42, 54);
        let want = [
            0xa15c02b7u32,
            0x7b47f409,
            0xba1d3330,
            0x83d2f293,
            0xbfa4784b,
            0xcbed606e,
        ];
        for w in want {
            assert_eq!(r.next_u32(), w);
        }
    }

    #[test]
    fn top_k_with_ties() {
        let l = [5, 9, 9, 1, 9, 3];
        assert_eq!(top_k_cut(&l, 2), (9, 2));
        assert_eq!(top_k_cut(&l, 4), (5, 1));
        assert_eq!(top_k_cut(&l, 0), (i32::MIN, usize::MAX));
        let mut kept = std::vec::Vec::new();
        for_each_kept(&l, 9, 2, |v, _| kept.push(v));
        assert_eq!(kept, [1, 2]);
    }

    #[test]
    fn greedy_and_top1() {
        let l = [3, 7, 7, -2];
        assert_eq!(Sampler::new(SamplerConfig::GREEDY).sample(&l), 1);
        let mut s = Sampler::new(SamplerConfig {
            temperature_milli: 5000,
            top_k: 1,
            seed: 9,
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&l), 1);
        }
    }

    #[test]
    fn frequencies_follow_softmax() {
        // Logits 0 and ln 3 nats at T = 1: p = 1/4, 3/4.
        let ln3 = (3f64.ln() * 65536.0).round() as i32;
        let l = [0, ln3];
        let mut s = Sampler::new(SamplerConfig {
            temperature_milli: 1000,
            top_k: 0,
            seed: 1,
        });
        let n = 20000;
        let ones = (0..n).filter(|_| s.sample(&l) == 1).count();
        let p = ones as f64 / n as f64;
        assert!((p - 0.75).abs() < 0.015, "p = {p}");
    }
}
