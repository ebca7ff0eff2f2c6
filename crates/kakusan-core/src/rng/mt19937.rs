//! The 32-bit Mersenne Twister (MT19937) as PyTorch's CPU generator runs it.
//!
//! Seeding takes the low 32 bits of a 64-bit seed (torch accepts seeds up to 2^64 - 1 and
//! seed 2^32 + 5 gives the same numbers as seed 5). The state is regenerated lazily, on the
//! first draw after seeding and after every 624 draws.

/// Words in the Mersenne Twister state.
const STATE_WORDS: usize = 624;
/// The twist offset ("m" in the MT19937 paper).
const SHIFT: usize = 397;
/// The twist matrix's bottom row.
const TWIST_XOR: u32 = 0x9908_b0df;
const UPPER_BIT: u32 = 0x8000_0000;
const LOWER_BITS: u32 = 0x7fff_ffff;

/// A Mersenne Twister engine with torch's seeding and draw order.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; STATE_WORDS],
    /// Index of the next word of `state` to temper and return; `STATE_WORDS` means "twist
    /// first".
    next: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Mt19937 {
    /// Seeds the engine with the low 32 bits of `seed` (the standard MT19937 initialisation).
    pub fn new(seed: u64) -> Self {
        let mut state = [0u32; STATE_WORDS];
        state[0] = (seed & 0xffff_ffff) as u32;
        for i in 1..STATE_WORDS {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self {
            state,
            next: STATE_WORDS,
        }
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        if self.next >= STATE_WORDS {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// 64 random bits as torch's `random64` builds them: the first 32-bit draw is the high
    /// half, the second the low half.
    pub fn next_u64(&mut self) -> u64 {
        let high = self.next_u32() as u64;
        let low = self.next_u32() as u64;
        (high << 32) | low
    }

    /// Regenerates all 624 words of the state.
    fn twist(&mut self) {
        for i in 0..STATE_WORDS {
            let mixed =
                (self.state[i] & UPPER_BIT) | (self.state[(i + 1) % STATE_WORDS] & LOWER_BITS);
            let mut shifted = mixed >> 1;
            if self.state[(i + 1) % STATE_WORDS] & 1 != 0 {
                shifted ^= TWIST_XOR;
            }
            self.state[i] = self.state[(i + SHIFT) % STATE_WORDS] ^ shifted;
        }
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_mt19937_output() {
        // The 10000th output of a default-seeded (5489) mt19937 is 4123659995 (C++11
        // [rand.predef] requires this of std::mt19937).
        let mut mt = Mt19937::new(5489);
        let mut last = 0;
        for _ in 0..10_000 {
            last = mt.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }

    #[test]
    fn only_the_low_32_bits_of_the_seed_count() {
        let mut a = Mt19937::new((1u64 << 32) + 5);
        let mut b = Mt19937::new(5);
        for _ in 0..700 {
            assert_eq!(a.next_u32(), b.next_u32());
        }
    }

    #[test]
    fn next_u64_puts_the_first_draw_high() {
        let mut a = Mt19937::new(7);
        let mut b = Mt19937::new(7);
        let hi = b.next_u32() as u64;
        let lo = b.next_u32() as u64;
        assert_eq!(a.next_u64(), (hi << 32) | lo);
    }
}
