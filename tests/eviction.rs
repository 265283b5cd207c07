//! Eviction by the monitor: silent workers are evicted, heartbeating ones kept.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(400);
const MONITOR_INTERVAL: Duration = Duration::from_millis(50);
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);
/// Upper bound on the wait for an eviction. The expected wait is at most
/// HEARTBEAT_TIMEOUT + MONITOR_INTERVAL, plus scheduling delays.
const EVICTION_DEADLINE: Duration = Duration::from_secs(5);

#[test]
fn silent_worker_evicted_active_kept() {
    let (coordinator, client) = setup(|config| {
        config.heartbeat_timeout = HEARTBEAT_TIMEOUT;
        config.monitor_interval = MONITOR_INTERVAL;
    });

    register(&client, "active");
    let silent_registered = Instant::now();
    register(&client, "silent");

    let stop = Arc::new(AtomicBool::new(false));
    let unacknowledged = Arc::new(AtomicUsize::new(0));
    let heartbeats = {
        let client = client.clone();
        let stop = stop.clone();
        let unacknowledged = unacknowledged.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if !heartbeat_acknowledged(&client, "active") {
                    unacknowledged.fetch_add(1, Ordering::Relaxed);
                }
                thread::sleep(HEARTBEAT_INTERVAL);
            }
        })
    };

    let evicted = wait_until(EVICTION_DEADLINE, || {
        find_worker(&coordinator, "silent").is_none()
    });
    let silent_for = silent_registered.elapsed();
    assert!(
        evicted,
        "silent worker still registered after {EVICTION_DEADLINE:?}"
    );
    assert!(
        silent_for >= HEARTBEAT_TIMEOUT,
        "silent worker evicted after {silent_for:?}, before the {HEARTBEAT_TIMEOUT:?} timeout"
    );

    // The active worker registered first, so without its heartbeats it
    // would have been evicted no later than the silent one.
    assert_eq!(worker_ids(&coordinator.workers()), ["active"]);

    stop.store(true, Ordering::Relaxed);
    heartbeats.join().expect("heartbeat thread finishes");
    assert_eq!(
        unacknowledged.load(Ordering::Relaxed),
        0,
        "some heartbeats of the active worker were not acknowledged"
    );
}

#[test]
fn evicted_worker_can_register_again() {
    let (coordinator, client) = setup(|config| {
        config.heartbeat_timeout = HEARTBEAT_TIMEOUT;
        config.monitor_interval = MONITOR_INTERVAL;
    });
    register(&client, "worker-1");

    let evicted = wait_until(EVICTION_DEADLINE, || coordinator.workers().is_empty());
    assert!(
        evicted,
        "worker-1 still registered after {EVICTION_DEADLINE:?}"
    );

    assert!(
        !heartbeat_acknowledged(&client, "worker-1"),
        "heartbeat of an evicted worker was acknowledged"
    );
    assert!(coordinator.workers().is_empty());

    let response = register(&client, "worker-1");
    assert_eq!(response.assigned_worker_id, "worker-1");
    assert!(heartbeat_acknowledged(&client, "worker-1"));
    assert_eq!(worker_ids(&coordinator.workers()), ["worker-1"]);
}

#[test]
fn no_eviction_before_timeout() {
    let (coordinator, client) = setup(|config| {
        config.heartbeat_timeout = Duration::from_secs(60);
        config.monitor_interval = MONITOR_INTERVAL;
    });
    register(&client, "worker-1");

    // About five sweeps run in this time, and none may evict a worker
    // heard from well within the timeout.
    thread::sleep(5 * MONITOR_INTERVAL);

    assert_eq!(worker_ids(&coordinator.workers()), ["worker-1"]);
    assert!(heartbeat_acknowledged(&client, "worker-1"));
}
