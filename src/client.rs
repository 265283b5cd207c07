//! Worker side of the protocol: a session that registers with the
//! coordinator, heartbeats on its own thread and deregisters on stop.
//!
//! The session registers again whenever a heartbeat is not acknowledged
//! (the coordinator evicted or fenced this worker, or restarted) or the
//! coordinator incarnation changes, and retries failed calls with capped
//! exponential backoff and jitter.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use grpcio::{CallOption, ChannelBuilder, EnvBuilder};
use parking_lot::{Condvar, Mutex};
use protobuf::MessageField;

use crate::backoff::Backoff;
use crate::convert::{request_from_spec, status_to_proto};
use crate::error::Error;
use crate::proto::master as pb;
use crate::proto::master_grpc::MasterServiceClient;
use crate::validate::validate_spec;
use crate::worker::{WorkerSpec, WorkerStatus};

/// Default time between heartbeats: a sixth of the coordinator's default
/// 60 s timeout, so several heartbeats can be lost before eviction.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Default deadline of each call to the coordinator.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default first retry delay after a failed call.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Default cap on the retry delay.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Connection and pacing settings of a worker session.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Coordinator address, such as `127.0.0.1:50051`.
    pub endpoint: String,
    pub spec: WorkerSpec,
    pub heartbeat_interval: Duration,
    pub call_timeout: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl WorkerOptions {
    /// Creates options with the default intervals.
    pub fn new(endpoint: impl Into<String>, spec: WorkerSpec) -> WorkerOptions {
        WorkerOptions {
            endpoint: endpoint.into(),
            spec,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

/// The session's current registration with the coordinator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Registration {
    incarnation: u64,
    coordinator_incarnation: u64,
}

struct Shared {
    client: MasterServiceClient,
    options: WorkerOptions,
    registration: Mutex<Option<Registration>>,
    /// Signalled whenever `registration` changes.
    registration_changed: Condvar,
    status: Mutex<Option<WorkerStatus>>,
}

/// A registered worker. Dropping it stops the heartbeat thread and
/// deregisters, as `stop()` does.
pub struct WorkerSession {
    shared: Arc<Shared>,
    notify_stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerSession {
    /// Starts a session: its thread registers at once, retrying until the
    /// coordinator accepts, then heartbeats every `heartbeat_interval`.
    ///
    /// # Errors
    ///
    /// `Error::InvalidArgument` when the spec would be rejected by any
    /// coordinator, and `Error::Config` when the thread cannot be spawned.
    pub fn start(options: WorkerOptions) -> Result<WorkerSession, Error> {
        validate_spec(&options.spec)?;
        let environment = Arc::new(
            EnvBuilder::new()
                .cq_count(1)
                .name_prefix("worker-grpc")
                .build(),
        );
        let channel = ChannelBuilder::new(environment)
            .initial_reconnect_backoff(options.initial_backoff)
            .max_reconnect_backoff(options.max_backoff)
            .connect(&options.endpoint);
        let shared = Arc::new(Shared {
            client: MasterServiceClient::new(channel),
            options,
            registration: Mutex::new(None),
            registration_changed: Condvar::new(),
            status: Mutex::new(None),
        });

        let (notify_stop, stop) = bounded::<()>(1);
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("worker-heartbeat-{}", shared.options.spec.id))
            .spawn(move || run_session(&thread_shared, &stop))
            .map_err(|error| {
                Error::Config(format!("failed to spawn the heartbeat thread: {error}"))
            })?;
        Ok(WorkerSession {
            shared,
            notify_stop: Some(notify_stop),
            thread: Some(thread),
        })
    }

    /// Returns the worker id.
    pub fn worker_id(&self) -> &str {
        &self.shared.options.spec.id
    }

    /// Returns whether the coordinator acknowledged the last registration
    /// or heartbeat.
    pub fn is_registered(&self) -> bool {
        self.shared.registration.lock().is_some()
    }

    /// Returns the incarnation of the current registration.
    pub fn incarnation(&self) -> Option<u64> {
        self.shared
            .registration
            .lock()
            .map(|registration| registration.incarnation)
    }

    /// Returns the incarnation of the coordinator this worker is registered with.
    pub fn coordinator_incarnation(&self) -> Option<u64> {
        self.shared
            .registration
            .lock()
            .map(|registration| registration.coordinator_incarnation)
    }

    /// Sets the status sent with every following heartbeat.
    pub fn set_status(&self, status: WorkerStatus) {
        *self.shared.status.lock() = Some(status);
    }

    /// Blocks until the session is registered with an incarnation other
    /// than `previous`, or `timeout` passes. Returns the new incarnation.
    pub fn wait_for_registration(&self, previous: Option<u64>, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        let mut registration = self.shared.registration.lock();
        loop {
            if let Some(current) = *registration {
                if Some(current.incarnation) != previous {
                    return Some(current.incarnation);
                }
            }
            if self
                .shared
                .registration_changed
                .wait_until(&mut registration, deadline)
                .timed_out()
            {
                return None;
            }
        }
    }

    /// Stops heartbeating and deregisters the current incarnation, trying
    /// once within the call timeout. Calling it again does nothing.
    pub fn stop(&mut self) {
        self.notify_stop.take();
        let Some(thread) = self.thread.take() else {
            return;
        };
        if thread.join().is_err() {
            log::error!("heartbeat thread of worker {} panicked", self.worker_id());
        }

        let Some(registration) = self.shared.registration.lock().take() else {
            return;
        };
        let request = pb::DeregisterWorkerRequest {
            worker_id: self.worker_id().to_string(),
            incarnation: registration.incarnation,
            ..Default::default()
        };
        let option = CallOption::default().timeout(self.shared.options.call_timeout);
        match self.shared.client.deregister_worker_opt(&request, option) {
            Ok(reply) => log::info!(
                "worker {} deregistered (removed: {})",
                self.worker_id(),
                reply.removed
            ),
            Err(error) => log::warn!(
                "worker {} failed to deregister: {error}; the coordinator will evict it after its heartbeat timeout",
                self.worker_id()
            ),
        }
    }
}

impl Drop for WorkerSession {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Result of one round of the session loop.
enum Step {
    /// The call succeeded; wait a heartbeat interval.
    Healthy,
    /// The coordinator does not know this registration; register at once.
    RegisterAgain,
    /// The call failed for the reason given; retry after a backoff delay.
    Failed(String),
}

fn run_session(shared: &Shared, stop: &Receiver<()>) {
    let options = &shared.options;
    let id = &options.spec.id;
    let mut backoff = Backoff::new(options.initial_backoff, options.max_backoff);
    // Consecutive failed calls; only the first of a run is logged at warn.
    let mut failures: u64 = 0;
    loop {
        let current = *shared.registration.lock();
        let step = match current {
            None => register(shared),
            Some(registration) => heartbeat(shared, registration),
        };
        if failures > 0 && !matches!(step, Step::Failed(_)) {
            log::info!("worker {id}: coordinator reachable again after {failures} failed calls");
            failures = 0;
        }
        let delay = match step {
            Step::Healthy => {
                backoff.reset();
                options.heartbeat_interval
            }
            Step::RegisterAgain => {
                set_registration(shared, None);
                Duration::ZERO
            }
            Step::Failed(reason) => {
                let delay = backoff.next_delay();
                if failures == 0 {
                    log::warn!("worker {id}: {reason}; retrying with backoff");
                } else {
                    log::debug!("worker {id}: {reason}; retrying in {delay:?}");
                }
                failures += 1;
                delay
            }
        };
        match stop.recv_timeout(delay) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn register(shared: &Shared) -> Step {
    let spec = &shared.options.spec;
    let request = request_from_spec(spec);
    let option = CallOption::default().timeout(shared.options.call_timeout);
    match shared.client.register_worker_opt(&request, option) {
        Ok(reply) if reply.success => {
            log::info!(
                "worker {} registered with coordinator {:x} (incarnation {})",
                spec.id,
                reply.coordinator_incarnation,
                reply.incarnation
            );
            set_registration(
                shared,
                Some(Registration {
                    incarnation: reply.incarnation,
                    coordinator_incarnation: reply.coordinator_incarnation,
                }),
            );
            Step::Healthy
        }
        Ok(reply) => Step::Failed(format!("registration refused: {}", reply.message)),
        Err(error) => Step::Failed(format!("registration failed: {error}")),
    }
}

fn heartbeat(shared: &Shared, registration: Registration) -> Step {
    let id = &shared.options.spec.id;
    let status = shared.status.lock().clone();
    let request = pb::HeartbeatRequest {
        worker_id: id.clone(),
        status: match status {
            Some(status) => MessageField::some(status_to_proto(&status)),
            None => MessageField::none(),
        },
        timestamp: unix_seconds(),
        incarnation: registration.incarnation,
        ..Default::default()
    };
    let option = CallOption::default().timeout(shared.options.call_timeout);
    match shared.client.send_heartbeat_opt(&request, option) {
        Ok(reply) if reply.coordinator_incarnation != registration.coordinator_incarnation => {
            log::info!(
                "worker {id}: coordinator restarted ({:x} -> {:x}); registering again",
                registration.coordinator_incarnation,
                reply.coordinator_incarnation
            );
            Step::RegisterAgain
        }
        Ok(reply) if !reply.acknowledged => {
            log::info!(
                "worker {id}: heartbeat not acknowledged (evicted or fenced); registering again"
            );
            Step::RegisterAgain
        }
        Ok(_) => Step::Healthy,
        Err(error) => Step::Failed(format!("heartbeat failed: {error}")),
    }
}

fn set_registration(shared: &Shared, registration: Option<Registration>) {
    *shared.registration.lock() = registration;
    shared.registration_changed.notify_all();
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}
