//! Shared membership state: the registry, its watchers and its waiters
//! behind one lock, plus the logging of every membership change.
//!
//! Every mutation reads `Instant::now()` while holding the lock, so instants
//! reach the registry in order and its liveness list stays sorted. Events are
//! published under the same lock, so watchers see changes in version order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::channel::oneshot;
use parking_lot::Mutex;

use crate::error::Error;
use crate::events::{ChangeKind, MembershipEvent};
use crate::incarnation::{random_nonzero_u64, IncarnationSource};
use crate::registry::{
    sort_records, sorted_copies, HeartbeatOutcome, Page, Registration, RegistrationKind, Registry,
    Removal, RemovalKind, WorkerRecord,
};
use crate::validate::{validate_spec, validate_status, validate_worker_id};
use crate::wait::{WaitList, WaitOutcome, WaitSpec};
use crate::watch::{Subscription, WatchHub, WATCH_BUFFER};
use crate::worker::{WorkerFilter, WorkerSpec, WorkerStatus};

/// Workers evicted per lock acquisition during a sweep. Small enough that a
/// heartbeat waits well under a millisecond behind one batch.
pub const EVICTION_BATCH: usize = 1024;

/// Counts from one eviction sweep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepSummary {
    pub evicted: usize,
    pub active: usize,
}

/// Starting point of a new watch: every current worker at one version.
pub struct WatchStart {
    /// Every worker at `membership_version`, in id order.
    pub snapshot: Vec<Arc<WorkerRecord>>,
    pub membership_version: u64,
    pub subscription: Subscription,
}

struct State {
    registry: Registry,
    watchers: WatchHub,
    waiters: WaitList,
    /// Set once a stop begins; new watches and waits are then rejected.
    stopping: bool,
}

/// The registry shared by the RPC handlers, the monitor and library callers.
pub struct Membership {
    state: Mutex<State>,
    /// Number of open waits, read without the lock by the wait timer.
    open_waits: AtomicUsize,
    incarnations: IncarnationSource,
    coordinator_incarnation: u64,
}

impl Membership {
    /// Creates empty membership with a fresh coordinator incarnation.
    pub fn new(max_workers: usize, heartbeat_timeout: Duration) -> Membership {
        Membership {
            state: Mutex::new(State {
                registry: Registry::new(max_workers, heartbeat_timeout),
                watchers: WatchHub::default(),
                waiters: WaitList::default(),
                stopping: false,
            }),
            open_waits: AtomicUsize::new(0),
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
            let mut state = self.state.lock();
            let registration =
                state
                    .registry
                    .register(spec, incarnation, Instant::now(), unix_millis())?;
            let kind = match registration.kind {
                RegistrationKind::Joined => ChangeKind::Joined,
                RegistrationKind::Reregistered => ChangeKind::Reregistered,
            };
            let previous = registration
                .previous
                .as_ref()
                .map(|record| &record.capabilities);
            state.apply_change(
                kind,
                &registration.record,
                registration.membership_version,
                previous,
            );
            registration
        };

        let record = &registration.record;
        let verb = match registration.kind {
            RegistrationKind::Joined => "registered",
            RegistrationKind::Reregistered => "re-registered",
        };
        log::info!(
            "worker {} {verb} at {address} (incarnation {})",
            record.id,
            record.incarnation
        );
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
            let mut state = self.state.lock();
            state
                .registry
                .heartbeat(id, incarnation, status, Instant::now())
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
            let mut state = self.state.lock();
            let removal = state.registry.deregister(id, incarnation, Instant::now());
            if let Some(removal) = &removal {
                state.apply_removal(removal);
            }
            removal
        };
        match &removal {
            Some(removal) => log::info!(
                "worker {} deregistered (incarnation {})",
                removal.record.id,
                removal.record.incarnation
            ),
            None => log::debug!("deregistration of worker {id} removed nothing"),
        }
        Ok(removal)
    }

    /// Evicts every worker silent for longer than the heartbeat timeout,
    /// releasing the lock between batches.
    pub fn sweep(&self) -> SweepSummary {
        let mut evicted = 0;
        loop {
            let removals = {
                let mut state = self.state.lock();
                let removals = state.registry.evict_expired(Instant::now(), EVICTION_BATCH);
                for removal in &removals {
                    state.apply_removal(removal);
                }
                removals
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

    /// Returns one page of workers matching `filter` after the id `after`,
    /// with the current membership version.
    pub fn page(
        &self,
        filter: &WorkerFilter,
        after: Option<&str>,
        page_size: usize,
    ) -> (Page, u64) {
        let state = self.state.lock();
        let page = state.registry.page(filter, after, page_size);
        (page, state.registry.membership_version())
    }

    /// Opens a watch: a snapshot of every worker and the live events after it.
    ///
    /// # Errors
    ///
    /// `Error::NotServing` once a stop has begun.
    pub fn watch(&self) -> Result<WatchStart, Error> {
        let (records, membership_version, subscription) = {
            let mut state = self.state.lock();
            if state.stopping {
                return Err(Error::NotServing);
            }
            (
                state.registry.shared_records(),
                state.registry.membership_version(),
                state.watchers.subscribe(),
            )
        };
        // Sorting happens after the lock is released: at a million workers it
        // takes longer than copying the pointers.
        Ok(WatchStart {
            snapshot: sort_records(records),
            membership_version,
            subscription,
        })
    }

    /// Opens a wait for enough matching workers; the receiver gets the outcome.
    ///
    /// # Errors
    ///
    /// `Error::NotServing` once a stop has begun.
    pub fn wait(&self, spec: WaitSpec) -> Result<oneshot::Receiver<WaitOutcome>, Error> {
        let (reply, outcome) = oneshot::channel();
        let mut state = self.state.lock();
        if state.stopping {
            return Err(Error::NotServing);
        }
        let State {
            registry, waiters, ..
        } = &mut *state;
        waiters.add(spec, registry, reply);
        self.open_waits.store(waiters.len(), Ordering::Release);
        Ok(outcome)
    }

    /// Ends waits whose deadline has passed or whose caller went away.
    pub fn expire_waits(&self) {
        if self.open_waits.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut state = self.state.lock();
        state.waiters.expire(Instant::now());
        self.open_waits
            .store(state.waiters.len(), Ordering::Release);
    }

    /// Ends every watch and wait and rejects new ones: the first step of a stop.
    pub fn close_streams(&self) {
        let mut state = self.state.lock();
        state.stopping = true;
        let waits = state.waiters.len();
        let watches = state.watchers.close_all();
        state.waiters.close_all();
        self.open_waits.store(0, Ordering::Release);
        if watches + waits > 0 {
            log::info!("ending {watches} watches and {waits} waits for the stop");
        }
    }

    /// Returns the number of registered workers.
    pub fn len(&self) -> usize {
        self.state.lock().registry.len()
    }

    /// Returns whether no worker is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the current membership version.
    pub fn membership_version(&self) -> u64 {
        self.state.lock().registry.membership_version()
    }

    /// Returns a copy of every worker record, in id order.
    pub fn snapshot(&self) -> Vec<WorkerRecord> {
        // Copying and sorting happen after the lock is released.
        let records = self.state.lock().registry.shared_records();
        sorted_copies(records)
    }
}

impl State {
    /// Publishes a change to watchers and updates waiters; called under the lock.
    fn apply_change(
        &mut self,
        kind: ChangeKind,
        record: &WorkerRecord,
        membership_version: u64,
        before: Option<&crate::worker::Capabilities>,
    ) {
        let after = match kind {
            ChangeKind::Joined | ChangeKind::Reregistered => Some(&record.capabilities),
            ChangeKind::Left | ChangeKind::Evicted => None,
        };
        self.waiters.on_change(&self.registry, before, after);

        if self.watchers.is_empty() {
            return;
        }
        let event = Arc::new(MembershipEvent {
            kind,
            record: record.clone(),
            membership_version,
        });
        let cut_off = self.watchers.publish(&event);
        if cut_off > 0 {
            log::warn!(
                "cut off {cut_off} watchers that fell more than {WATCH_BUFFER} events behind"
            );
        }
    }

    fn apply_removal(&mut self, removal: &Removal) {
        let kind = match removal.kind {
            RemovalKind::Deregistered => ChangeKind::Left,
            RemovalKind::Evicted => ChangeKind::Evicted,
        };
        self.apply_change(
            kind,
            &removal.record,
            removal.membership_version,
            Some(&removal.record.capabilities),
        );
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
