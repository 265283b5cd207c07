//! A named thread that runs a task on a fixed tick until stopped.

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, select, tick, Sender};

/// Owns a periodic thread; dropping it stops and joins the thread.
pub struct PeriodicTask {
    name: String,
    notify_shutdown: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PeriodicTask {
    /// Starts a thread named `name` that runs `task` every `interval`.
    ///
    /// # Errors
    ///
    /// Returns the I/O error when the thread cannot be spawned.
    pub fn start(
        name: &str,
        interval: Duration,
        mut task: impl FnMut() + Send + 'static,
    ) -> std::io::Result<PeriodicTask> {
        let (notify_shutdown, shutdown) = bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let ticker = tick(interval);
                loop {
                    select! {
                        recv(ticker) -> _ => task(),
                        recv(shutdown) -> _ => break,
                    }
                }
            })?;
        Ok(PeriodicTask {
            name: name.to_string(),
            notify_shutdown: Some(notify_shutdown),
            thread: Some(thread),
        })
    }

    /// Stops the thread without waiting for its next tick and joins it.
    /// Calling it again does nothing.
    pub fn stop(&mut self) {
        // Dropping the sender wakes the select at once, even mid-interval.
        self.notify_shutdown.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("thread {} panicked", self.name);
            }
            log::debug!("thread {} stopped", self.name);
        }
    }
}

impl Drop for PeriodicTask {
    fn drop(&mut self) {
        self.stop();
    }
}
