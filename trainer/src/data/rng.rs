//! The batch sampler's random number generator: SplitMix64, whose whole state is one `u64`,
//! so a checkpoint can store it and `--resume` continues the exact same stream.

use serde::{Deserialize, Serialize};

/// [`runtime::SplitMix64`]'s stream with a named, serializable state: 64-bit, passes BigCrush,
/// trivially resumable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitMix64 {
    /// The full generator state.
    pub state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut stream = runtime::SplitMix64(self.state);
        let bits = stream.next_u64();
        self.state = stream.0;
        bits
    }

    /// A uniform integer in `0..n` (`n > 0`), by Lemire's multiply-shift (bias < n / 2^64).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_first_outputs() {
        // Reference values of SplitMix64 seeded with 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn resumes_from_state() {
        let mut a = SplitMix64::new(42);
        for _ in 0..10 {
            a.next_u64();
        }
        let mut b = SplitMix64 { state: a.state };
        assert_eq!(a.next_u64(), b.next_u64());
        assert!((0..1000).all(|_| a.below(7) < 7));
    }
}
