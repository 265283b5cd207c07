//! The liveness monitor: a named thread that sweeps the registry on a tick.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, select, tick, Sender};

use crate::membership::Membership;

/// Owns the monitor thread; dropping it stops and joins the thread.
pub struct Monitor {
    notify_shutdown: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Starts the monitor thread, which sweeps every `interval`.
    ///
    /// # Errors
    ///
    /// Returns the I/O error when the thread cannot be spawned.
    pub fn start(membership: Arc<Membership>, interval: Duration) -> std::io::Result<Monitor> {
        let (notify_shutdown, shutdown) = bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("coordinator-monitor".to_string())
            .spawn(move || {
                let ticker = tick(interval);
                loop {
                    select! {
                        recv(ticker) -> _ => {
                            let summary = membership.sweep();
                            log::info!(
                                "monitor sweep: {} active workers, {} evicted",
                                summary.active,
                                summary.evicted
                            );
                        }
                        recv(shutdown) -> _ => break,
                    }
                }
                log::debug!("monitor stopped");
            })?;
        Ok(Monitor {
            notify_shutdown: Some(notify_shutdown),
            thread: Some(thread),
        })
    }

    /// Stops the monitor without waiting for its next tick and joins it.
    /// Calling it again does nothing.
    pub fn stop(&mut self) {
        // Dropping the sender wakes the select at once, even mid-interval.
        self.notify_shutdown.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("monitor thread panicked");
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop();
    }
}
