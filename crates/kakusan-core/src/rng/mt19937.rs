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

    /// `K` engines seeded with `seeds`, as `K` calls of [`Self::new`]: the seeding recurrence
    /// is a chain of 623 dependent multiplications, so `K` chains side by side (vectorised
    /// across engines) cost about what one does.
    pub fn new_many<const K: usize>(seeds: [u64; K]) -> [Self; K] {
        // Word i of every engine, side by side: `columns[i][k]`.
        let mut columns = [[0u32; K]; STATE_WORDS];
        columns[0] = seeds.map(|s| (s & 0xffff_ffff) as u32);
        for i in 1..STATE_WORDS {
            let prev = columns[i - 1];
            columns[i] = prev.map(|p| {
                1_812_433_253u32
                    .wrapping_mul(p ^ (p >> 30))
                    .wrapping_add(i as u32)
            });
        }
        let states: [[u32; STATE_WORDS]; K] =
            std::array::from_fn(|k| std::array::from_fn(|i| columns[i][k]));
        states.map(|state| Self {
            state,
            next: STATE_WORDS,
        })
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        if self.next >= STATE_WORDS {
            self.twist();
        }
        let y = self.state[self.next];
        self.next += 1;
        temper(y)
    }

    /// Fills `out` with the next `out.len()` words: the same words as that many
    /// [`Self::next_u32`] calls, in bulk (the tempering of a run of state words vectorises).
    pub fn fill_u32(&mut self, out: &mut [u32]) {
        let mut done = 0;
        while done < out.len() {
            if self.next >= STATE_WORDS {
                self.twist();
            }
            let take = (STATE_WORDS - self.next).min(out.len() - done);
            let words = &self.state[self.next..self.next + take];
            for (o, &w) in out[done..done + take].iter_mut().zip(words) {
                *o = temper(w);
            }
            self.next += take;
            done += take;
        }
    }

    /// 64 random bits as torch's `random64` builds them: the first 32-bit draw is the high
    /// half, the second the low half.
    pub fn next_u64(&mut self) -> u64 {
        let high = self.next_u32() as u64;
        let low = self.next_u32() as u64;
        (high << 32) | low
    }

    /// Regenerates all 624 words of the state (in place, in order: word `i` uses the new
    /// words before it and the old ones after it, as the reference does).
    fn twist(&mut self) {
        let s = &mut self.state;
        // The three index ranges of `(i + 1) % N` and `(i + SHIFT) % N`, without the modulo.
        for i in 0..STATE_WORDS - SHIFT {
            s[i] = s[i + SHIFT] ^ twisted(s[i], s[i + 1]);
        }
        for i in STATE_WORDS - SHIFT..STATE_WORDS - 1 {
            s[i] = s[i + SHIFT - STATE_WORDS] ^ twisted(s[i], s[i + 1]);
        }
        let last = STATE_WORDS - 1;
        s[last] = s[SHIFT - 1] ^ twisted(s[last], s[0]);
        self.next = 0;
    }
}

/// The twist of word `word` with its successor `next`: the upper bit of one and the lower
/// bits of the other, shifted, with the matrix row added when `next` is odd.
#[inline(always)]
fn twisted(word: u32, next: u32) -> u32 {
    let mixed = (word & UPPER_BIT) | (next & LOWER_BITS);
    (mixed >> 1) ^ (0u32.wrapping_sub(next & 1) & TWIST_XOR)
}

/// MT19937's output tempering of a state word.
#[inline(always)]
fn temper(mut y: u32) -> u32 {
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c_5680;
    y ^= (y << 15) & 0xefc6_0000;
    y ^= y >> 18;
    y
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
    fn bulk_fill_continues_the_stream_exactly() {
        let mut single = Mt19937::new(123);
        let mut bulk = Mt19937::new(123);
        // Runs that start mid-state and cross several twists, mixed with single draws.
        for len in [0usize, 1, 5, 623, 624, 625, 1000, 3000, 7] {
            let want: Vec<u32> = (0..len).map(|_| single.next_u32()).collect();
            let mut got = vec![0u32; len];
            bulk.fill_u32(&mut got);
            assert_eq!(got, want, "run of {len}");
            assert_eq!(bulk.next_u32(), single.next_u32());
        }
    }

    #[test]
    fn seeding_many_equals_seeding_each() {
        let seeds = [0u64, 1, 5489, (1 << 32) + 9, u64::MAX, 77, 123_456_789, 42];
        let many = Mt19937::new_many(seeds);
        for (mut m, &seed) in many.into_iter().zip(&seeds) {
            let mut one = Mt19937::new(seed);
            for _ in 0..1300 {
                assert_eq!(m.next_u32(), one.next_u32());
            }
        }
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
