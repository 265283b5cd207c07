//! Worker registry: the membership table, liveness order and eviction.
//!
//! The registry is plain Rust with no gRPC types. Every call that depends on
//! time takes the current `Instant` as an argument, so tests drive the clock
//! explicitly and the server passes `Instant::now()` taken under its lock.
//!
//! Workers sit in a doubly linked list ordered by their last heartbeat, least
//! recent first, kept in a slab of slots. A heartbeat moves one worker to the
//! tail in O(1), and a sweep pops expired workers off the head, so its cost
//! grows with the number of evictions rather than with the fleet size.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::worker::{Capabilities, WorkerFilter, WorkerSpec, WorkerStatus};

/// Index of a slot in the slab.
type SlotIndex = usize;

/// Stored state of one registered worker.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerRecord {
    pub id: Arc<str>,
    pub host: String,
    pub port: i32,
    pub capabilities: Capabilities,
    /// Fresh for every successful registration; heartbeats carrying another
    /// nonzero value are fenced.
    pub incarnation: u64,
    pub registered_at: Instant,
    /// Wall-clock registration time, for display only.
    pub registered_at_unix_ms: i64,
    pub last_heartbeat: Instant,
    pub last_status: Option<WorkerStatus>,
}

impl WorkerRecord {
    /// Returns how long the worker has been silent at `now`.
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_heartbeat)
    }
}

/// Whether a registration added a new worker or replaced a known one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrationKind {
    Joined,
    Reregistered,
}

/// Result of a successful registration.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    pub kind: RegistrationKind,
    pub record: WorkerRecord,
    /// The record this registration replaced, on a re-registration.
    pub previous: Option<WorkerRecord>,
    /// Membership version after this registration.
    pub membership_version: u64,
}

/// Result of a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// The worker is known and its liveness was refreshed.
    Acknowledged,
    /// No worker with this id is registered.
    UnknownWorker,
    /// The heartbeat carried an incarnation other than the current one.
    Fenced { current: u64 },
}

/// Reason a worker left the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovalKind {
    /// The worker deregistered itself.
    Deregistered,
    /// The worker was silent for longer than the heartbeat timeout.
    Evicted,
}

/// A worker removed from the registry.
#[derive(Clone, Debug, PartialEq)]
pub struct Removal {
    pub kind: RemovalKind,
    pub record: WorkerRecord,
    /// How long the worker had been silent when it was removed.
    pub silent_for: Duration,
    /// Membership version after this removal.
    pub membership_version: u64,
}

/// One page of workers in id order.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub workers: Vec<WorkerRecord>,
    /// Id of the last worker on this page when more may follow.
    pub last_id: Option<Arc<str>>,
    pub total_count: u64,
}

struct Slot {
    /// Shared so a snapshot copies pointers, not records; a heartbeat on a
    /// record that a snapshot still references copies it first.
    record: Option<Arc<WorkerRecord>>,
    prev: Option<SlotIndex>,
    next: Option<SlotIndex>,
}

/// The membership table.
pub struct Registry {
    max_workers: usize,
    heartbeat_timeout: Duration,
    by_id: HashMap<Arc<str>, SlotIndex>,
    /// Ids in lexicographic order, for paging; changed on joins and removals only.
    ordered_ids: BTreeSet<Arc<str>>,
    slots: Vec<Slot>,
    free_slots: Vec<SlotIndex>,
    /// Least recently heard-from worker.
    head: Option<SlotIndex>,
    /// Most recently heard-from worker.
    tail: Option<SlotIndex>,
    membership_version: u64,
}

impl Registry {
    /// Creates an empty registry.
    pub fn new(max_workers: usize, heartbeat_timeout: Duration) -> Registry {
        Registry {
            max_workers,
            heartbeat_timeout,
            by_id: HashMap::new(),
            ordered_ids: BTreeSet::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            head: None,
            tail: None,
            membership_version: 0,
        }
    }

    /// Returns the number of registered workers.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Returns whether no worker is registered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Returns the version counter, which grows by one on every join,
    /// re-registration, departure and eviction.
    pub fn membership_version(&self) -> u64 {
        self.membership_version
    }

    /// Returns the heartbeat timeout this registry evicts by.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }

    /// Returns the worker with this id, if registered.
    pub fn get(&self, id: &str) -> Option<&WorkerRecord> {
        let index = *self.by_id.get(id)?;
        self.slots[index].record.as_deref()
    }

    /// Stores a validated worker under a fresh incarnation, replacing any
    /// record with the same id. The registration counts as a heartbeat.
    ///
    /// # Errors
    ///
    /// `Error::RegistryFull` when the id is new and the registry
    /// contains `max_workers` workers already.
    pub fn register(
        &mut self,
        spec: WorkerSpec,
        incarnation: u64,
        now: Instant,
        unix_ms: i64,
    ) -> Result<Registration, Error> {
        let now = self.clamp_to_tail(now);
        let existing = self.by_id.get(spec.id.as_str()).copied();
        if existing.is_none() && self.by_id.len() >= self.max_workers {
            return Err(Error::RegistryFull {
                max_workers: self.max_workers,
            });
        }

        let id: Arc<str> = Arc::from(spec.id.as_str());
        let record = WorkerRecord {
            id: id.clone(),
            host: spec.host,
            port: spec.port,
            capabilities: spec.capabilities,
            incarnation,
            registered_at: now,
            registered_at_unix_ms: unix_ms,
            last_heartbeat: now,
            last_status: None,
        };

        let (kind, previous) = match existing {
            Some(index) => {
                self.unlink(index);
                let previous = self.slots[index]
                    .record
                    .replace(Arc::new(record.clone()))
                    .map(unwrap_record);
                self.push_tail(index);
                (RegistrationKind::Reregistered, previous)
            }
            None => {
                let index = self.allocate(record.clone());
                self.push_tail(index);
                self.by_id.insert(id.clone(), index);
                self.ordered_ids.insert(id);
                (RegistrationKind::Joined, None)
            }
        };
        self.membership_version += 1;
        Ok(Registration {
            kind,
            record,
            previous,
            membership_version: self.membership_version,
        })
    }

    /// Refreshes a worker's liveness and stores its latest status.
    ///
    /// An `incarnation` of 0 matches any registration; another value must
    /// equal the current incarnation, or the heartbeat is fenced and changes
    /// nothing.
    pub fn heartbeat(
        &mut self,
        id: &str,
        incarnation: u64,
        status: Option<WorkerStatus>,
        now: Instant,
    ) -> HeartbeatOutcome {
        let now = self.clamp_to_tail(now);
        let Some(&index) = self.by_id.get(id) else {
            return HeartbeatOutcome::UnknownWorker;
        };
        let Some(shared) = self.slots[index].record.as_mut() else {
            return HeartbeatOutcome::UnknownWorker;
        };
        if incarnation != 0 && incarnation != shared.incarnation {
            return HeartbeatOutcome::Fenced {
                current: shared.incarnation,
            };
        }
        let record = Arc::make_mut(shared);

        record.last_heartbeat = now;
        if status.is_some() {
            record.last_status = status;
        }
        self.unlink(index);
        self.push_tail(index);
        HeartbeatOutcome::Acknowledged
    }

    /// Removes a worker that is leaving cleanly.
    ///
    /// An `incarnation` of 0 removes whichever registration is current;
    /// another value removes the worker only if it matches.
    pub fn deregister(&mut self, id: &str, incarnation: u64, now: Instant) -> Option<Removal> {
        let index = *self.by_id.get(id)?;
        let current = self.slots[index].record.as_ref()?.incarnation;
        if incarnation != 0 && incarnation != current {
            return None;
        }
        Some(self.remove(index, RemovalKind::Deregistered, now))
    }

    /// Evicts up to `limit` workers silent for longer than the heartbeat
    /// timeout at `now`, least recent first.
    ///
    /// Callers that hold a lock around the registry call this in batches, so
    /// heartbeats are served between batches during a large sweep.
    pub fn evict_expired(&mut self, now: Instant, limit: usize) -> Vec<Removal> {
        let mut removed = Vec::new();
        while removed.len() < limit {
            let Some(index) = self.head else { break };
            let expired = self.slots[index]
                .record
                .as_ref()
                .is_some_and(|record| record.silent_for(now) > self.heartbeat_timeout);
            if !expired {
                break;
            }
            removed.push(self.remove(index, RemovalKind::Evicted, now));
        }
        removed
    }

    /// Returns a copy of every worker record, in id order.
    pub fn snapshot(&self) -> Vec<WorkerRecord> {
        sorted_copies(self.shared_records())
    }

    /// Returns every worker record in no particular order, as shared
    /// pointers: cheap enough to take under a lock at a million workers.
    /// `sort_records` puts them in id order.
    pub fn shared_records(&self) -> Vec<Arc<WorkerRecord>> {
        self.slots
            .iter()
            .filter_map(|slot| slot.record.clone())
            .collect()
    }

    /// Returns up to `page_size` workers matching `filter` whose ids sort after
    /// `after`, and the total number of workers matching `filter`.
    ///
    /// Paging by the last id returned means a worker that joins between pages
    /// is either listed once or missed, never listed twice.
    pub fn page(&self, filter: &WorkerFilter, after: Option<&str>, page_size: usize) -> Page {
        use std::ops::Bound;

        let lower = match after {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        let mut workers = Vec::new();
        let mut more = false;
        for id in self.ordered_ids.range::<str, _>((lower, Bound::Unbounded)) {
            let Some(record) = self.get(id) else { continue };
            if !filter.matches(&record.capabilities) {
                continue;
            }
            if workers.len() == page_size {
                more = true;
                break;
            }
            workers.push(record.clone());
        }

        let total_count = self.count_matching(filter) as u64;
        let last_id = if more {
            workers.last().map(|record| record.id.clone())
        } else {
            None
        };
        Page {
            workers,
            last_id,
            total_count,
        }
    }

    /// Returns the number of workers matching `filter`.
    pub fn count_matching(&self, filter: &WorkerFilter) -> usize {
        if filter.is_empty() {
            return self.len();
        }
        self.iter()
            .filter(|record| filter.matches(&record.capabilities))
            .count()
    }

    /// Returns the ids of every worker matching `filter`, in id order.
    pub fn matching_ids(&self, filter: &WorkerFilter) -> Vec<String> {
        self.ordered_ids
            .iter()
            .filter(|id| {
                self.get(id)
                    .is_some_and(|record| filter.matches(&record.capabilities))
            })
            .map(|id| id.to_string())
            .collect()
    }

    fn iter(&self) -> impl Iterator<Item = &WorkerRecord> {
        self.slots.iter().filter_map(|slot| slot.record.as_deref())
    }

    /// Keeps the liveness list sorted when callers pass instants out of order:
    /// a worker is never stamped earlier than the most recent one.
    fn clamp_to_tail(&self, now: Instant) -> Instant {
        match self
            .tail
            .and_then(|index| self.slots[index].record.as_deref())
        {
            Some(latest) if latest.last_heartbeat > now => latest.last_heartbeat,
            _ => now,
        }
    }

    fn remove(&mut self, index: SlotIndex, kind: RemovalKind, now: Instant) -> Removal {
        self.unlink(index);
        let record = unwrap_record(
            self.slots[index]
                .record
                .take()
                .expect("a linked slot always contains a record"),
        );
        self.free_slots.push(index);
        self.by_id.remove(&record.id);
        self.ordered_ids.remove(&record.id);
        self.membership_version += 1;
        Removal {
            kind,
            silent_for: record.silent_for(now),
            record,
            membership_version: self.membership_version,
        }
    }

    fn allocate(&mut self, record: WorkerRecord) -> SlotIndex {
        let slot = Slot {
            record: Some(Arc::new(record)),
            prev: None,
            next: None,
        };
        match self.free_slots.pop() {
            Some(index) => {
                self.slots[index] = slot;
                index
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        }
    }

    fn push_tail(&mut self, index: SlotIndex) {
        self.slots[index].prev = self.tail;
        self.slots[index].next = None;
        match self.tail {
            Some(tail) => self.slots[tail].next = Some(index),
            None => self.head = Some(index),
        }
        self.tail = Some(index);
    }

    fn unlink(&mut self, index: SlotIndex) {
        let (prev, next) = (self.slots[index].prev, self.slots[index].next);
        match prev {
            Some(prev) => self.slots[prev].next = next,
            None => self.head = next,
        }
        match next {
            Some(next) => self.slots[next].prev = prev,
            None => self.tail = prev,
        }
        self.slots[index].prev = None;
        self.slots[index].next = None;
    }
}

/// Sorts shared records by worker id.
pub fn sort_records(mut records: Vec<Arc<WorkerRecord>>) -> Vec<Arc<WorkerRecord>> {
    records.sort_unstable_by(|left, right| left.id.cmp(&right.id));
    records
}

/// Returns owned copies of shared records, in worker id order.
pub fn sorted_copies(records: Vec<Arc<WorkerRecord>>) -> Vec<WorkerRecord> {
    sort_records(records)
        .iter()
        .map(|record| WorkerRecord::clone(record))
        .collect()
}

/// Takes a record out of its `Arc`, copying it only if a snapshot still
/// references it.
fn unwrap_record(record: Arc<WorkerRecord>) -> WorkerRecord {
    Arc::try_unwrap(record).unwrap_or_else(|shared| WorkerRecord::clone(&shared))
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
