//! Rates as the policy states them: a token bucket per metered rate (the Redis import's calls
//! and bytes, a plugin's lock calls).

use std::time::Instant;

/// A token bucket: up to `capacity` units at once, refilled at `capacity` units per second.
///
/// It bounds a rate the way the policy states it: no more than `capacity` in a burst, and no
/// more than `capacity` per second sustained (any one-second window admits at most twice the
/// capacity).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    capacity: u64,
    available: f64,
    refilled: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket of `capacity` units per second.
    pub(crate) fn new(capacity: u64) -> Self {
        TokenBucket {
            capacity,
            available: capacity as f64,
            refilled: None,
        }
    }

    /// Takes `units` at `now`; false (and nothing taken) when the bucket holds fewer.
    pub(crate) fn take(&mut self, now: Instant, units: u64) -> bool {
        let capacity = self.capacity as f64;
        if let Some(last) = self.refilled {
            let earned = now.saturating_duration_since(last).as_secs_f64() * capacity;
            self.available = (self.available + earned).min(capacity);
        }
        self.refilled = Some(now);
        let units = units as f64;
        if units > self.available {
            return false;
        }
        self.available -= units;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_bucket_admits_a_burst_then_its_rate() {
        let mut bucket = TokenBucket::new(4);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(bucket.take(at(0), 3));
        assert!(bucket.take(at(0), 1));
        assert!(!bucket.take(at(0), 1), "the burst is spent");
        assert!(!bucket.take(at(100), 1), "0.4 units earned in 100 ms");
        assert!(bucket.take(at(250), 1), "1 unit earned by 250 ms");
        assert!(
            !bucket.take(at(5000), 5),
            "never more than the capacity at once"
        );
        assert!(bucket.take(at(5000), 4));
    }

    #[test]
    fn no_one_second_window_admits_more_than_twice_the_capacity() {
        let mut bucket = TokenBucket::new(10);
        let t0 = Instant::now();
        let admitted = (0..1000)
            .filter(|&ms| bucket.take(t0 + Duration::from_millis(ms), 1))
            .count();
        assert!((10..=20).contains(&admitted), "{admitted}");
    }
}
