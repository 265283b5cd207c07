//! A count of calls the server is handling, so a stop can tell in-flight
//! calls from idle connections.
//!
//! gRPC's own shutdown waits for every connection to acknowledge the
//! GOAWAY, which an idle client may take seconds to do. The stop instead
//! waits for this count to reach zero and then closes what is left.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Shared counter of calls in flight.
#[derive(Clone, Default)]
pub struct InFlight {
    calls: Arc<AtomicUsize>,
}

impl InFlight {
    /// Counts one call until the returned guard is dropped.
    pub fn enter(&self) -> CallGuard {
        self.calls.fetch_add(1, Ordering::AcqRel);
        CallGuard {
            calls: self.calls.clone(),
        }
    }

    /// Returns the number of calls in flight.
    pub fn count(&self) -> usize {
        self.calls.load(Ordering::Acquire)
    }
}

/// Keeps one call counted while it lives; move it into the future that
/// sends the call's reply.
pub struct CallGuard {
    calls: Arc<AtomicUsize>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.calls.fetch_sub(1, Ordering::AcqRel);
    }
}
