//! Callers blocked in `WaitForWorkers` until enough matching workers are present.
//!
//! Each waiter keeps a running count of matching workers, adjusted on every
//! membership change, so a change costs O(1) per waiter. Only the change that
//! satisfies a waiter lists the matching ids.

use std::time::Instant;

use futures::channel::oneshot;

use crate::registry::Registry;
use crate::worker::{Capabilities, WorkerFilter};

/// Outcome of a wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    Ready {
        worker_ids: Vec<String>,
        membership_version: u64,
    },
    TimedOut {
        present: usize,
        min_workers: usize,
    },
    Stopping,
}

/// A wait to add: what to wait for and when to give up.
pub struct WaitSpec {
    pub filter: WorkerFilter,
    pub min_workers: usize,
    /// When the wait times out on its own, if ever.
    pub deadline: Option<Instant>,
    /// Returns true once the caller's deadline has passed or it went away.
    pub abandoned: Box<dyn Fn() -> bool + Send>,
}

struct Waiter {
    spec: WaitSpec,
    present: usize,
    reply: oneshot::Sender<WaitOutcome>,
}

/// The open waits.
#[derive(Default)]
pub struct WaitList {
    waiters: Vec<Waiter>,
}

impl WaitList {
    /// Adds a wait, or completes it at once when `registry` already has
    /// enough matching workers.
    pub fn add(
        &mut self,
        spec: WaitSpec,
        registry: &Registry,
        reply: oneshot::Sender<WaitOutcome>,
    ) {
        let present = registry.count_matching(&spec.filter);
        if present >= spec.min_workers {
            let _ = reply.send(ready(registry, &spec.filter));
            return;
        }
        self.waiters.push(Waiter {
            spec,
            present,
            reply,
        });
    }

    /// Returns the number of open waits.
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Returns whether no wait is open.
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Updates every count for one change, after `registry` applied it, and
    /// completes the waits it satisfies. `before` and `after` are the
    /// worker's capabilities before and after the change, `None` where the
    /// worker was or is absent.
    pub fn on_change(
        &mut self,
        registry: &Registry,
        before: Option<&Capabilities>,
        after: Option<&Capabilities>,
    ) {
        let mut index = 0;
        while index < self.waiters.len() {
            let waiter = &mut self.waiters[index];
            let filter = &waiter.spec.filter;
            let was = before.is_some_and(|capabilities| filter.matches(capabilities));
            let is = after.is_some_and(|capabilities| filter.matches(capabilities));
            match (was, is) {
                (false, true) => waiter.present += 1,
                (true, false) => waiter.present = waiter.present.saturating_sub(1),
                _ => {}
            }
            if waiter.present < waiter.spec.min_workers {
                index += 1;
                continue;
            }
            let satisfied = self.waiters.swap_remove(index);
            let _ = satisfied
                .reply
                .send(ready(registry, &satisfied.spec.filter));
        }
    }

    /// Ends waits whose deadline passed at `now` or whose caller gave up.
    pub fn expire(&mut self, now: Instant) {
        let mut still_open = Vec::with_capacity(self.waiters.len());
        for waiter in self.waiters.drain(..) {
            let timed_out = waiter.spec.deadline.is_some_and(|deadline| now >= deadline);
            if waiter.reply.is_canceled() {
                continue;
            }
            if timed_out || (waiter.spec.abandoned)() {
                let _ = waiter.reply.send(WaitOutcome::TimedOut {
                    present: waiter.present,
                    min_workers: waiter.spec.min_workers,
                });
                continue;
            }
            still_open.push(waiter);
        }
        self.waiters = still_open;
    }

    /// Ends every wait because the coordinator is stopping.
    pub fn close_all(&mut self) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.reply.send(WaitOutcome::Stopping);
        }
    }
}

fn ready(registry: &Registry, filter: &WorkerFilter) -> WaitOutcome {
    WaitOutcome::Ready {
        worker_ids: registry.matching_ids(filter),
        membership_version: registry.membership_version(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::worker::{GpuFilter, WorkerSpec};

    const TIMEOUT: Duration = Duration::from_secs(60);

    fn spec(id: &str, gpu: bool) -> WorkerSpec {
        WorkerSpec {
            id: id.to_string(),
            capabilities: Capabilities {
                gpu_enabled: gpu,
                ..Capabilities::default()
            },
            ..WorkerSpec::default()
        }
    }

    fn wait_spec(min_workers: usize, gpu: GpuFilter, deadline: Option<Instant>) -> WaitSpec {
        WaitSpec {
            filter: WorkerFilter {
                gpu,
                ..WorkerFilter::default()
            },
            min_workers,
            deadline,
            abandoned: Box::new(|| false),
        }
    }

    /// Registers a worker and reports the change to the waiters.
    fn join(registry: &mut Registry, waiters: &mut WaitList, id: &str, gpu: bool, now: Instant) {
        let registration = registry.register(spec(id, gpu), 1, now, 0).unwrap();
        let before = registration
            .previous
            .as_ref()
            .map(|record| &record.capabilities);
        waiters.on_change(registry, before, Some(&registration.record.capabilities));
    }

    #[test]
    fn zero_min_completes_at_once() {
        let registry = Registry::new(10, TIMEOUT);
        let mut waiters = WaitList::default();
        let (reply, mut outcome) = oneshot::channel();

        waiters.add(wait_spec(0, GpuFilter::Any, None), &registry, reply);

        assert!(waiters.is_empty());
        assert_eq!(
            outcome.try_recv().unwrap(),
            Some(WaitOutcome::Ready {
                worker_ids: vec![],
                membership_version: 0
            })
        );
    }

    #[test]
    fn completes_when_enough_match() {
        let mut registry = Registry::new(10, TIMEOUT);
        let mut waiters = WaitList::default();
        let now = Instant::now();
        let (reply, mut outcome) = oneshot::channel();
        waiters.add(wait_spec(2, GpuFilter::GpuOnly, None), &registry, reply);

        join(&mut registry, &mut waiters, "cpu-1", false, now);
        join(&mut registry, &mut waiters, "gpu-1", true, now);
        assert_eq!(outcome.try_recv().unwrap(), None);
        join(&mut registry, &mut waiters, "gpu-2", true, now);

        assert!(waiters.is_empty());
        assert_eq!(
            outcome.try_recv().unwrap(),
            Some(WaitOutcome::Ready {
                worker_ids: vec!["gpu-1".to_string(), "gpu-2".to_string()],
                membership_version: 3
            })
        );
    }

    #[test]
    fn departures_lower_the_count() {
        let mut registry = Registry::new(10, TIMEOUT);
        let mut waiters = WaitList::default();
        let now = Instant::now();
        let (reply, mut outcome) = oneshot::channel();
        waiters.add(wait_spec(2, GpuFilter::Any, None), &registry, reply);

        join(&mut registry, &mut waiters, "a", false, now);
        let removal = registry.deregister("a", 0, now).unwrap();
        waiters.on_change(&registry, Some(&removal.record.capabilities), None);
        join(&mut registry, &mut waiters, "b", false, now);

        assert_eq!(outcome.try_recv().unwrap(), None);
        join(&mut registry, &mut waiters, "c", false, now);
        assert!(matches!(
            outcome.try_recv().unwrap(),
            Some(WaitOutcome::Ready { .. })
        ));
    }

    #[test]
    fn reregistration_changing_capabilities_counts() {
        let mut registry = Registry::new(10, TIMEOUT);
        let mut waiters = WaitList::default();
        let now = Instant::now();
        let (reply, mut outcome) = oneshot::channel();
        waiters.add(wait_spec(1, GpuFilter::GpuOnly, None), &registry, reply);

        join(&mut registry, &mut waiters, "w", false, now);
        assert_eq!(outcome.try_recv().unwrap(), None);
        join(&mut registry, &mut waiters, "w", true, now);

        assert!(matches!(
            outcome.try_recv().unwrap(),
            Some(WaitOutcome::Ready { .. })
        ));
    }

    #[test]
    fn expire_reports_present_count() {
        let mut registry = Registry::new(10, TIMEOUT);
        let mut waiters = WaitList::default();
        let now = Instant::now();
        let (reply, mut outcome) = oneshot::channel();
        let deadline = now + Duration::from_millis(100);
        waiters.add(
            wait_spec(3, GpuFilter::Any, Some(deadline)),
            &registry,
            reply,
        );
        join(&mut registry, &mut waiters, "a", false, now);

        waiters.expire(now + Duration::from_millis(99));
        assert_eq!(waiters.len(), 1);
        waiters.expire(deadline);

        assert!(waiters.is_empty());
        assert_eq!(
            outcome.try_recv().unwrap(),
            Some(WaitOutcome::TimedOut {
                present: 1,
                min_workers: 3
            })
        );
    }

    #[test]
    fn abandoned_wait_expires() {
        let registry = Registry::new(10, TIMEOUT);
        let mut waiters = WaitList::default();
        let abandoned = Arc::new(AtomicBool::new(false));
        let flag = abandoned.clone();
        let (reply, mut outcome) = oneshot::channel();
        let mut spec = wait_spec(1, GpuFilter::Any, None);
        spec.abandoned = Box::new(move || flag.load(Ordering::Relaxed));
        waiters.add(spec, &registry, reply);

        waiters.expire(Instant::now());
        assert_eq!(waiters.len(), 1);
        abandoned.store(true, Ordering::Relaxed);
        waiters.expire(Instant::now());

        assert!(matches!(
            outcome.try_recv().unwrap(),
            Some(WaitOutcome::TimedOut { present: 0, .. })
        ));
    }

    #[test]
    fn close_all_reports_stopping() {
        let registry = Registry::new(10, TIMEOUT);
        let mut waiters = WaitList::default();
        let (reply, mut outcome) = oneshot::channel();
        waiters.add(wait_spec(1, GpuFilter::Any, None), &registry, reply);

        waiters.close_all();

        assert_eq!(outcome.try_recv().unwrap(), Some(WaitOutcome::Stopping));
    }
}
