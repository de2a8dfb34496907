//! SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014):
//! the one deterministic stream that the tests, benches and examples of every crate draw random
//! weights, activations and models from. Its whole state is one `u64`, so a seed reproduces a
//! case exactly on every machine.
//!
//! Generation does not use it: the sampler draws from its own PCG32 stream
//! ([`Sampler`](crate::Sampler)), whose sequence the golden transcripts pin.

/// A SplitMix64 stream; the tuple field is the state (the seed, before the first draw).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next 32 random bits (the high half of [`next_u64`](Self::next_u64)).
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A value in `0..n` (`next_u64() % n`: the slight bias of the remainder does not matter
    /// for test data); `0` when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64().checked_rem(n).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    #[test]
    fn the_published_stream() {
        // SplitMix64 seeded with 0: the reference implementation's first outputs.
        let mut r = SplitMix64(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
        assert_eq!(r.below(0), 0);
        let mut a = SplitMix64(42);
        let b = a;
        assert_eq!(a.next_u32(), (b.clone().next_u64() >> 32) as u32);
    }
}
