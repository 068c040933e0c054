//! The retry schedule: attempt 1 at once, then `base * 2^(n-2)` before attempt `n`, capped,
//! with optional full jitter.

/// A capped exponential backoff schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before attempt 2, in milliseconds.
    pub base_ms: u64,
    /// No delay is longer than this.
    pub max_ms: u64,
    /// Draw each delay uniformly from `[0, delay]` instead of using it as is.
    pub jitter: bool,
}

impl Backoff {
    /// The delay in milliseconds before attempt `attempt` (1-based). Attempt 1 has none.
    /// `random` is called only with jitter on, and only for a non-zero delay.
    pub fn delay_ms(&self, attempt: u32, random: impl FnOnce() -> u64) -> u64 {
        if attempt <= 1 {
            return 0;
        }
        let doublings = attempt - 2;
        let delay = if doublings >= 63 {
            u64::MAX
        } else {
            self.base_ms.saturating_mul(1u64 << doublings)
        }
        .min(self.max_ms);
        if self.jitter && delay > 0 {
            random() % (delay + 1)
        } else {
            delay
        }
    }

    /// The same schedule with every delay capped at `cap_ms` as well.
    pub fn capped(self, cap_ms: u64) -> Backoff {
        Backoff {
            max_ms: self.max_ms.min(cap_ms),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_jitter(base_ms: u64, max_ms: u64) -> Backoff {
        Backoff {
            base_ms,
            max_ms,
            jitter: false,
        }
    }

    #[test]
    fn first_attempt_is_immediate_and_later_ones_double() {
        let b = no_jitter(100, u64::MAX);
        let delays: Vec<u64> = (1..=6).map(|n| b.delay_ms(n, || unreachable!())).collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1600]);
    }

    #[test]
    fn delays_stop_growing_at_the_cap() {
        let b = no_jitter(100, 1000);
        assert_eq!(b.delay_ms(5, || 0), 800);
        assert_eq!(b.delay_ms(6, || 0), 1000);
        assert_eq!(b.delay_ms(40, || 0), 1000);
    }

    #[test]
    fn huge_attempt_numbers_saturate_instead_of_overflowing() {
        let b = no_jitter(u64::MAX / 2, u64::MAX);
        assert_eq!(b.delay_ms(4, || 0), u64::MAX);
        assert_eq!(b.delay_ms(u32::MAX, || 0), u64::MAX);
    }

    #[test]
    fn capped_takes_the_smaller_cap() {
        assert_eq!(no_jitter(100, 5000).capped(1000).max_ms, 1000);
        assert_eq!(no_jitter(100, 500).capped(1000).max_ms, 500);
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_delay() {
        let b = Backoff {
            jitter: true,
            ..no_jitter(100, 10_000)
        };
        assert_eq!(b.delay_ms(3, || 0), 0);
        assert_eq!(b.delay_ms(3, || 200), 200);
        assert_eq!(b.delay_ms(3, || 201), 0);
        assert_eq!(b.delay_ms(3, || u64::MAX), u64::MAX % 201);
    }

    #[test]
    fn zero_base_never_asks_for_randomness() {
        let b = Backoff {
            jitter: true,
            ..no_jitter(0, 1000)
        };
        assert_eq!(b.delay_ms(5, || unreachable!()), 0);
    }
}
