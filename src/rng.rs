//! Seeded, platform-independent pseudo-random numbers.
//!
//! Masks must be reproducible from their seed forever (plans are saved to disk), so the
//! generator is spelled out here (SplitMix64) instead of depending on a crate whose
//! algorithm may change between versions.

/// One SplitMix64 output step: a strong 64-bit mixing function.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of `(seed, index)`: the random value attached to one item, independent of
/// the order in which items are visited (so parallel loops stay reproducible).
pub fn hash2(seed: u64, index: u64) -> u64 {
    splitmix64(seed ^ splitmix64(index.wrapping_add(0x632B_E59B_D9B4_E019)))
}

/// A sequential seeded generator (SplitMix64), for weights and test data.
#[derive(Clone, Debug)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng { state: splitmix64(seed) }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.state)
    }

    /// A uniform value in [0, 1) with 24 random bits (exact in f32).
    pub fn next_unit_f32(&mut self) -> f32 {
        // 24 bits of the output: every value is exactly representable as an f32.
        let bits = u32::try_from(self.next_u64() >> 40).unwrap_or(0);
        bits as f32 / (1u32 << 24) as f32
    }

    /// A uniform value in [lo, hi).
    pub fn uniform_f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_unit_f32()
    }

    /// `n` uniform values in [lo, hi).
    pub fn vec_f32(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform_f32(lo, hi)).collect()
    }
}
