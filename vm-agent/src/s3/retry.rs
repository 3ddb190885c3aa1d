//! Retry policy: which failures are worth another attempt, and how long to
//! wait before it (exponential backoff with jitter, bounded).

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Retry {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubled each time up to `cap`.
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Retry {
    /// About 45 s of waiting in all before giving up.
    fn default() -> Self {
        Retry {
            attempts: 9,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
        }
    }
}

/// Is an HTTP answer worth retrying? 5xx (503 SlowDown among them), 429,
/// and S3's `RequestTimeout` (400: the store gave up on a slow upload).
pub fn retryable_status(status: u16, code: &str) -> bool {
    matches!(status, 500 | 502 | 503 | 504 | 429)
        || code == "RequestTimeout"
        || code == "SlowDown"
        || code == "InternalError"
}

impl Retry {
    /// Wait after failed attempt `n` (1-based): half the doubled base as a
    /// floor (a throttling store must see us slow down), the other half
    /// jittered so that parallel writers do not retry in step.
    pub fn delay(&self, n: u32, seed: u64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << n.saturating_sub(1).min(20))
            .min(self.cap);
        let half = exp / 2;
        let jitter = if half.is_zero() {
            0
        } else {
            splitmix(seed) % (half.as_nanos() as u64 + 1)
        };
        half + Duration::from_nanos(jitter)
    }
}

/// A well-mixed 64-bit value from `x` (SplitMix64): jitter, not secrecy.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let r = Retry {
            attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(350),
        };
        for seed in 0..50 {
            let d1 = r.delay(1, seed);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d2 = r.delay(2, seed);
            assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
            let d9 = r.delay(9, seed);
            assert!(d9 >= Duration::from_millis(175) && d9 <= Duration::from_millis(350));
        }
        assert_ne!(r.delay(3, 1), r.delay(3, 2));
    }

    #[test]
    fn what_is_retried() {
        for (s, c) in [
            (503, "SlowDown"),
            (500, "InternalError"),
            (502, ""),
            (504, ""),
            (400, "RequestTimeout"),
            (429, ""),
        ] {
            assert!(retryable_status(s, c), "{s} {c}");
        }
        for (s, c) in [
            (403, "AccessDenied"),
            (404, "NoSuchBucket"),
            (412, "PreconditionFailed"),
            (400, "InvalidArgument"),
        ] {
            assert!(!retryable_status(s, c), "{s} {c}");
        }
    }
}
