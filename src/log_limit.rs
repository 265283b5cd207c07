//! A rate limit for log lines that hostile or broken clients can trigger at will.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Allows one log line per second and counts the lines it held back.
pub struct LogLimit {
    last_second: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimit {
    /// Creates a limit that allows the next line.
    pub const fn new() -> LogLimit {
        LogLimit {
            last_second: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Returns `Some(n)` when a line may be logged now, `n` being how many
    /// lines were held back since the last one, and `None` otherwise.
    pub fn admit(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let last = self.last_second.load(Ordering::Relaxed);
        if now != last
            && self
                .last_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Default for LogLimit {
    fn default() -> LogLimit {
        LogLimit::new()
    }
}
