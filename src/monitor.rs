//! The liveness monitor: a named thread that sweeps the registry on a tick.

use std::sync::Arc;
use std::time::Duration;

use crate::membership::Membership;
use crate::periodic::PeriodicTask;

/// Starts the monitor thread, which evicts silent workers every `interval`
/// and logs the active count.
///
/// # Errors
///
/// Returns the I/O error when the thread cannot be spawned.
pub fn start_monitor(
    membership: Arc<Membership>,
    interval: Duration,
) -> std::io::Result<PeriodicTask> {
    PeriodicTask::start("coordinator-monitor", interval, move || {
        let summary = membership.sweep();
        log::info!(
            "monitor sweep: {} active workers, {} evicted",
            summary.active,
            summary.evicted
        );
    })
}
