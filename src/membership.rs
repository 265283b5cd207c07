//! Shared membership state: the registry behind one lock, plus the logging
//! of every membership change.
//!
//! Every mutation reads `Instant::now()` while holding the lock, so instants
//! reach the registry in order and its liveness list stays sorted.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::error::Error;
use crate::incarnation::{random_nonzero_u64, IncarnationSource};
use crate::registry::{
    HeartbeatOutcome, Registration, RegistrationKind, Registry, Removal, WorkerRecord,
};
use crate::validate::{validate_spec, validate_status, validate_worker_id};
use crate::worker::{WorkerSpec, WorkerStatus};

/// Workers evicted per lock acquisition during a sweep. Small enough that a
/// heartbeat waits well under a millisecond behind one batch.
const EVICTION_BATCH: usize = 1024;

/// Counts from one eviction sweep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepSummary {
    pub evicted: usize,
    pub active: usize,
}

/// The registry shared by the RPC handlers, the monitor and library callers.
pub struct Membership {
    registry: Mutex<Registry>,
    incarnations: IncarnationSource,
    coordinator_incarnation: u64,
}

impl Membership {
    /// Creates empty membership with a fresh coordinator incarnation.
    pub fn new(max_workers: usize, heartbeat_timeout: Duration) -> Membership {
        Membership {
            registry: Mutex::new(Registry::new(max_workers, heartbeat_timeout)),
            incarnations: IncarnationSource::new(),
            coordinator_incarnation: random_nonzero_u64(),
        }
    }

    /// Returns the random nonzero number that identifies this coordinator process.
    pub fn coordinator_incarnation(&self) -> u64 {
        self.coordinator_incarnation
    }

    /// Validates and stores a worker; see `Registry::register`.
    ///
    /// # Errors
    ///
    /// `Error::InvalidArgument` for a field that breaks a rule, in which case
    /// nothing is stored, and `Error::RegistryFull` for a new id when full.
    pub fn register(&self, spec: WorkerSpec) -> Result<Registration, Error> {
        validate_spec(&spec)?;
        let incarnation = self.incarnations.next_incarnation();
        let address = format!("{}:{}", spec.host, spec.port);

        let registration = {
            let mut registry = self.registry.lock();
            registry.register(spec, incarnation, Instant::now(), unix_millis())?
        };

        let record = &registration.record;
        match registration.kind {
            RegistrationKind::Joined => log::info!(
                "worker {} registered at {address} (incarnation {})",
                record.id,
                record.incarnation
            ),
            RegistrationKind::Reregistered => log::info!(
                "worker {} re-registered at {address} (incarnation {})",
                record.id,
                record.incarnation
            ),
        }
        Ok(registration)
    }

    /// Refreshes a worker's liveness; see `Registry::heartbeat`.
    ///
    /// # Errors
    ///
    /// `Error::InvalidArgument` for an empty or malformed worker id or status.
    pub fn heartbeat(
        &self,
        id: &str,
        incarnation: u64,
        status: Option<WorkerStatus>,
    ) -> Result<HeartbeatOutcome, Error> {
        validate_worker_id(id)?;
        if let Some(status) = &status {
            validate_status(status)?;
        }

        let outcome = {
            let mut registry = self.registry.lock();
            registry.heartbeat(id, incarnation, status, Instant::now())
        };

        match outcome {
            HeartbeatOutcome::Acknowledged => log::debug!("heartbeat from worker {id}"),
            HeartbeatOutcome::UnknownWorker => {
                log::debug!("heartbeat from unknown worker {id}; it must register again")
            }
            HeartbeatOutcome::Fenced { current } => log::info!(
                "fenced heartbeat from worker {id}: incarnation {incarnation} is stale, current is {current}"
            ),
        }
        Ok(outcome)
    }

    /// Removes a worker that is leaving cleanly; see `Registry::deregister`.
    ///
    /// # Errors
    ///
    /// `Error::InvalidArgument` for an empty or malformed worker id.
    pub fn deregister(&self, id: &str, incarnation: u64) -> Result<Option<Removal>, Error> {
        validate_worker_id(id)?;
        let removal = {
            let mut registry = self.registry.lock();
            registry.deregister(id, incarnation, Instant::now())
        };
        if let Some(removal) = &removal {
            log::info!(
                "worker {} deregistered (incarnation {})",
                removal.record.id,
                removal.record.incarnation
            );
        }
        Ok(removal)
    }

    /// Evicts every worker silent for longer than the heartbeat timeout,
    /// releasing the lock between batches.
    pub fn sweep(&self) -> SweepSummary {
        let mut evicted = 0;
        loop {
            let removals = {
                let mut registry = self.registry.lock();
                registry.evict_expired(Instant::now(), EVICTION_BATCH)
            };
            for removal in &removals {
                log::warn!(
                    "evicted worker {} (incarnation {}): silent for {:.1}s",
                    removal.record.id,
                    removal.record.incarnation,
                    removal.silent_for.as_secs_f64()
                );
            }
            evicted += removals.len();
            if removals.len() < EVICTION_BATCH {
                break;
            }
        }
        SweepSummary {
            evicted,
            active: self.len(),
        }
    }

    /// Returns the number of registered workers.
    pub fn len(&self) -> usize {
        self.registry.lock().len()
    }

    /// Returns whether no worker is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns a copy of every worker record, in id order.
    pub fn snapshot(&self) -> Vec<WorkerRecord> {
        self.registry.lock().snapshot()
    }
}

/// Returns the wall-clock time in milliseconds since the Unix epoch, for display.
fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}
