//! Random incarnation numbers for the coordinator and for registrations.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Returns 64 random bits, never 0.
///
/// `RandomState` draws its keys from the operating system's random source
/// once per process and varies them for every new state. That is enough for
/// identifiers that must differ across restarts, but it is not a
/// cryptographic generator.
pub fn random_nonzero_u64() -> u64 {
    loop {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos()),
        );
        let value = hasher.finish();
        if value != 0 {
            return value;
        }
    }
}

/// Hands out registration incarnations: a random 64-bit start, then one
/// more per registration. Values from two coordinator processes collide
/// only if their ranges overlap, which is vanishingly unlikely.
pub struct IncarnationSource {
    next: AtomicU64,
}

impl IncarnationSource {
    /// Creates a source starting at a random value.
    pub fn new() -> IncarnationSource {
        IncarnationSource {
            next: AtomicU64::new(random_nonzero_u64()),
        }
    }

    /// Returns a fresh nonzero incarnation.
    pub fn next_incarnation(&self) -> u64 {
        loop {
            let value = self.next.fetch_add(1, Ordering::Relaxed);
            if value != 0 {
                return value;
            }
        }
    }
}

impl Default for IncarnationSource {
    fn default() -> IncarnationSource {
        IncarnationSource::new()
    }
}
